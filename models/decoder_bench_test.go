package models

import (
	"fmt"
	"math"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

// BenchmarkDecoderParts times each part of the built-in model's decoder
// path on one image's embedding, for 1 and 16 box prompts per call: the
// prompt encoder, T2VSE, Dec_sag (SAM's mask decoder with the class token),
// Dec_saw without its per-image classification branch, the image context
// (positional encoding and CO tokens, once per image) and the whole pass as
// Model.Infer runs it. Run: go test ./models -run - -bench DecoderParts
func BenchmarkDecoderParts(b *testing.B) {
	m, err := Default(nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := m.Config
	c, g := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
	s := float32(cfg.SAM.ImageEncoder.ImgSize)
	data := make([]float32, c*g*g)
	for i := range data {
		data[i] = float32(math.Sin(float64(i) / 7))
	}
	emb := tensors.FromFlatDataAndDimensions(data, 1, c, g, g)
	type part struct {
		name string
		fn   func(scope *model.Scope, emb, coords, labels *Node) *Node
	}
	prompt := func(scope *model.Scope, coords, labels *Node) (sparse, dense *Node) {
		pe := scope.At("prompt_encoder")
		return sam.SparsePromptEmbeddings(pe, cfg.SAM, coords, labels), sam.DensePromptEmbeddings(pe, cfg.SAM, coords.Graph(), nil, coords.Shape().Dim(0))
	}
	perObject := func(emb *Node, n int) *Node { return BroadcastToDims(emb, n, c, g, g) }
	parts := []part{
		{"prompt_encoder", func(scope *model.Scope, emb, coords, labels *Node) *Node {
			sparse, dense := prompt(scope, coords, labels)
			return Add(ReduceAllSum(sparse), ReduceAllSum(dense))
		}},
		{"image_context", func(scope *model.Scope, emb, coords, labels *Node) *Node {
			ctx := segsam.NewImageContext(scope, cfg, emb)
			return Add(ReduceAllSum(ctx.PE), ReduceAllSum(ctx.Presence))
		}},
		{"T2VSE", func(scope *model.Scope, emb, coords, labels *Node) *Node {
			sparse, _ := prompt(scope, coords, labels)
			pe := sam.DensePositionalEncoding(scope.At("prompt_encoder"), cfg.SAM, emb.Graph())
			return segsam.TextEnhancer(scope.At("text_enhancer"), cfg, perObject(emb, coords.Shape().Dim(0)), pe, sparse)
		}},
		{"Dec_sag", func(scope *model.Scope, emb, coords, labels *Node) *Node {
			sparse, dense := prompt(scope, coords, labels)
			pe := sam.DensePositionalEncoding(scope.At("prompt_encoder"), cfg.SAM, emb.Graph())
			out := sam.MaskDecoderWithTokens(scope.At("mask_decoder"), cfg.SAM, perObject(emb, coords.Shape().Dim(0)), pe, sparse, dense, nil)
			return out.Masks
		}},
		{"Dec_saw", func(scope *model.Scope, emb, coords, labels *Node) *Node {
			sparse, dense := prompt(scope, coords, labels)
			pe := sam.DensePositionalEncoding(scope.At("prompt_encoder"), cfg.SAM, emb.Graph())
			n := coords.Shape().Dim(0)
			presence := ZerosLike(BroadcastToDims(Const(emb.Graph(), float32(0)), n, cfg.NumClasses()))
			return segsam.SemanticDecoder(scope.At("semantic_decoder"), cfg, perObject(emb, n), pe, sparse, dense, presence).Mask
		}},
	}
	for _, n := range []int{1, 16} {
		coords := make([]float32, 0, n*4)
		labels := make([]int32, 0, n*2)
		for k := 0; k < n; k++ {
			d := float32(k) * s / 64
			coords = append(coords, d, d, s/2+d, s/2+d)
			labels = append(labels, sam.LabelBoxTopLeft, sam.LabelBoxBotRight)
		}
		co := tensors.FromFlatDataAndDimensions(coords, n, 2, 2)
		la := tensors.FromFlatDataAndDimensions(labels, n, 2)
		for _, p := range parts {
			b.Run(fmt.Sprintf("%s/boxes=%d", p.name, n), func(b *testing.B) {
				exec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, p.fn)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := exec.Call(emb, co, la); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if _, err := exec.Call(emb, co, la); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("Infer/boxes=%d", n), func(b *testing.B) {
			in := sam.DecoderInputs{Embedding: emb, Coords: co, Labels: la}
			if _, err := m.Infer(in); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := m.Infer(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
