package segsam

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/sam"
)

// classAxes names every weight indexed by the class vocabulary and the axis
// of length K that the class indexes. Starting a model from a checkpoint of
// another vocabulary (--init-matching) carries these row by row by class
// name instead of dropping them, so a model retrained on more data keeps
// what it learnt about the classes it already knew. The text embeddings f_t
// are per class too, but come from the run's own --text-embeddings.
var classAxes = map[string]int{
	"semantic_decoder.class_head.weight":            0, // [K, C]
	"semantic_decoder.class_head.bias":              0, // [K]
	"semantic_decoder.co_tokens.weight":             0, // [K, C]
	"semantic_decoder.co_heads.weight":              0, // [K, C]
	"semantic_decoder.co_heads.bias":                0, // [K]
	"semantic_decoder.class_mask_tokens.weight":     0, // [K, C] (SAWD_sem)
	"semantic_decoder.presence_mlp.layers.0.weight": 1, // [C, K]
	"mask_decoder.class_head.weight":                0, // [K, C] (class-token variant)
	"mask_decoder.class_head.bias":                  0, // [K]
}

// sameVocabulary reports whether sd is a segsam checkpoint with m's class
// vocabulary in the same order (then every weight carries over as it is).
func (m *Model) sameVocabulary(sd *checkpoint.StateDict) bool {
	src, err := ConfigOf(sd)
	return err != nil || slices.Equal(src.Classes, m.Config.Classes)
}

// CopyClassRows copies, for every class that both m's vocabulary and the
// segsam checkpoint sd's have, that class's rows of the class-indexed
// weights (classAxes) from sd into m; the rows of classes sd lacks keep
// the values m has (its fresh initialisation: call it after Materialize).
// It returns the number of classes carried over and the weights changed.
// A checkpoint of the same vocabulary, or not a segsam checkpoint, changes
// nothing.
func (m *Model) CopyClassRows(sd *checkpoint.StateDict) (shared int, weights []string, err error) {
	defer m.forgetCompiled() // graphs and image contexts of the old weights
	src, err := ConfigOf(sd)
	if err != nil || slices.Equal(src.Classes, m.Config.Classes) {
		return 0, nil, nil
	}
	from := map[string]int{}
	for i, c := range src.Classes {
		from[c] = i
	}
	pairs := [][2]int{} // (dst, src) class indices
	for i, c := range m.Config.Classes {
		if j, ok := from[c]; ok {
			pairs = append(pairs, [2]int{i, j})
		}
	}
	if len(pairs) == 0 {
		return 0, nil, nil
	}
	kSrc, kDst := len(src.Classes), len(m.Config.Classes)
	for _, t := range sd.Tensors {
		axis, ok := classAxes[t.Name]
		if !ok {
			continue
		}
		v := m.SAM.Store.GetVariable(sam.KeyToPath(t.Name))
		if v == nil || !v.HasValue() {
			continue // the configuration has no such part
		}
		cur, err := v.Value()
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		dims := cur.Shape().Dimensions
		if len(dims) != len(t.Shape) || axis >= len(dims) || t.Shape[axis] != kSrc || dims[axis] != kDst {
			return 0, nil, fmt.Errorf("%s: shape %v in the checkpoint (%d classes), %v here (%d classes)", t.Name, t.Shape, kSrc, dims, kDst)
		}
		for i := range dims {
			if i != axis && dims[i] != t.Shape[i] {
				return 0, nil, fmt.Errorf("%s: shape %v in the checkpoint, %v here", t.Name, t.Shape, dims)
			}
		}
		data, err := tensors.CopyFlatData[float32](cur)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		// Row-major: axis splits the flat index into outer × K × inner.
		outer, inner := 1, 1
		for i := 0; i < axis; i++ {
			outer *= dims[i]
		}
		for i := axis + 1; i < len(dims); i++ {
			inner *= dims[i]
		}
		for o := 0; o < outer; o++ {
			for _, p := range pairs {
				copy(data[(o*kDst+p[0])*inner:(o*kDst+p[0]+1)*inner], t.Data[(o*kSrc+p[1])*inner:(o*kSrc+p[1]+1)*inner])
			}
		}
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(data, dims...)); err != nil {
			return 0, nil, fmt.Errorf("set %s: %w", t.Name, err)
		}
		weights = append(weights, t.Name)
	}
	return len(pairs), weights, nil
}
