package sam

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Point labels understood by SparsePromptEmbeddings. Labels 0 and 1 are the
// user's negative and positive clicks; the others are set by the predictor.
const (
	LabelPadding     = -1 // the padding point added to point-only prompts
	LabelNegative    = 0
	LabelPositive    = 1
	LabelBoxTopLeft  = 2 // first box corner
	LabelBoxBotRight = 3 // second box corner
	// LabelPEOnly marks a point that gets only its positional encoding, as
	// SAM does for labels outside -1..1.
	LabelPEOnly = 4
)

// positionalEncoding is PositionEmbeddingRandom: coordinates in [0,1]² (x, y)
// go through 2c-1, the random Gaussian matrix, ×2π, then [sin, cos].
//
//	coords: [..., 2] -> [..., C]
func positionalEncoding(scope *model.Scope, cfg Config, coords *Node) *Node {
	g := coords.Graph()
	half := cfg.PromptEncoder.EmbedDim / 2
	// A buffer in SAM (not trained): N(0, 1) when not loaded.
	gauss := variable(scope.At("pe_layer"), g, "positional_encoding_gaussian_matrix", initNormal, false, 2, half) // [2, C/2]
	c := AddScalar(MulScalar(coords, 2), -1)
	rank := c.Rank()
	lead := c.Shape().Dimensions[:rank-1]
	p := Einsum("nk,kc->nc", Reshape(c, -1, 2), gauss) // [N, C/2]
	p = MulScalar(p, 2*math.Pi)
	p = Concatenate([]*Node{Sin(p), Cos(p)}, -1) // [N, C]
	return Reshape(p, append(append([]int{}, lead...), 2*half)...)
}

// DensePositionalEncoding is PromptEncoder.get_dense_pe: the encoding of every
// image-embedding cell centre.
//
//	-> [1, C, g, g]
func DensePositionalEncoding(scope *model.Scope, cfg Config, g *Graph) *Node {
	grid := cfg.TokenGrid()
	coords := make([]float32, 0, grid*grid*2)
	for i := 0; i < grid; i++ {
		for j := 0; j < grid; j++ {
			// (cumsum - 0.5) / size, computed in float32 as torch does.
			coords = append(coords, (float32(j+1)-0.5)/float32(grid), (float32(i+1)-0.5)/float32(grid))
		}
	}
	pe := positionalEncoding(scope, cfg, Reshape(Const(g, coords), grid*grid, 2)) // [g*g, C]
	pe = Reshape(pe, 1, grid, grid, -1)
	return TransposeAllAxes(pe, 0, 3, 1, 2)
}

// SparsePromptEmbeddings embeds points and box corners (PromptEncoder's
// _embed_points and _embed_boxes): the positional encoding of each coordinate
// (+0.5, divided by the model input size) plus a learned embedding chosen by
// its label; padding points get not_a_point_embed instead of an encoding.
// Box corners use labels LabelBoxTopLeft and LabelBoxBotRight.
//
//	coords: [B, N, 2] (x, y in the model-input frame), labels: [B, N] int32 -> [B, N, C]
func SparsePromptEmbeddings(scope *model.Scope, cfg Config, coords, labels *Node) *Node {
	g := coords.Graph()
	c := cfg.PromptEncoder.EmbedDim
	size := cfg.PromptEncoder.InputImageSize
	norm := Const(g, []float32{float32(size[1]), float32(size[0])}) // x / W_in, y / H_in
	xy := Div(AddScalar(coords, 0.5), ExpandLeftToRank(norm, 3))
	pe := positionalEncoding(scope, cfg, xy) // [B, N, C]
	isPad := BroadcastToDims(InsertAxes(Equal(labels, ConstAs(labels, LabelPadding)), -1), pe.Shape().Dimensions...)
	pe = Where(isPad, ZerosLike(pe), pe)
	// Rows indexed by label+1: not_a_point, point_embeddings 0..3, none.
	rows := []*Node{Embedding(scope.At("not_a_point_embed"), g, 1, c)}
	for i := 0; i < 4; i++ {
		rows = append(rows, Embedding(scope.At("point_embeddings").At("%d", i), g, 1, c))
	}
	rows = append(rows, Zeros(g, rows[0].Shape()))
	table := Concatenate(rows, 0)                         // [6, C]
	oneHot := OneHot(AddScalar(labels, 1), 6, pe.DType()) // [B, N, 6]
	return Add(pe, Einsum("bnk,kc->bnc", oneHot, table))
}

// DensePromptEmbeddings embeds a low-resolution mask prompt through
// mask_downscaling, or broadcasts no_mask_embed when mask is nil.
//
//	mask: [B, 1, 4g, 4g] or nil -> [B, C, g, g]
func DensePromptEmbeddings(scope *model.Scope, cfg Config, g *Graph, mask *Node, batch int) *Node {
	c := cfg.PromptEncoder.EmbedDim
	grid := cfg.TokenGrid()
	if mask == nil {
		e := Embedding(scope.At("no_mask_embed"), g, 1, c) // [1, C]
		return BroadcastToDims(Reshape(e, 1, c, 1, 1), batch, c, grid, grid)
	}
	in := cfg.PromptEncoder.MaskInChans
	s := scope.At("mask_downscaling")
	x := TransposeAllAxes(mask, 0, 2, 3, 1)                                                   // [B, 4g, 4g, 1]
	x = GELU(LayerNorm(s.At("1"), Conv2d(s.At("0"), x, in/4, 2, 2, 0, true), layerNorm2dEps)) // [B, 2g, 2g, in/4]
	x = GELU(LayerNorm(s.At("4"), Conv2d(s.At("3"), x, in, 2, 2, 0, true), layerNorm2dEps))   // [B, g, g, in]
	x = Conv2d(s.At("6"), x, c, 1, 1, 0, true)                                                // [B, g, g, C]
	return TransposeAllAxes(x, 0, 3, 1, 2)
}
