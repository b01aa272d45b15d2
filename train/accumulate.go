package train

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/model/initializer"
	"github.com/gomlx/gomlx/ml/train/optimizer"
)

// Gradient accumulation (issue 17.5): the paper trains on 32 images per GPU
// on 4 GPUs; on a CPU a step holds a few images. With Options.Accumulate = k
// the gradients of k consecutive steps are summed in variables under
// /acc_grads and their mean is applied once, so the optimiser sees the
// gradient of k·ImagesPerStep images (the effective batch). The learning
// rate is not rescaled: choose it for the effective batch (the paper's 1e-4
// is for 128 images; linear scaling from there is the usual rule).

// accumulatedGradientsScope holds one accumulator per trainable variable.
const accumulatedGradientsScope = "/acc_grads"

// withGradients is an optimiser that applies given gradients (GoMLX's Adam
// and SGD are).
type withGradients interface {
	UpdateGraphWithGradients(scope *model.Scope, grads []*Node, lossDType dtypes.DType)
}

// accumulateGraph adds the gradients of loss to the accumulators and, when
// apply is set, hands their mean over k steps to the optimiser and clears
// them.
func accumulateGraph(scope *model.Scope, opt optimizer.Interface, loss *Node, k int, apply bool) {
	g := loss.Graph()
	grads := scope.BuildTrainableVariablesGradientsGraph(loss)
	// The same variables, in the same order, as the gradients.
	var trainable []*model.Variable
	for v := range scope.IterVariables() {
		if v.Trainable && v.InUseByGraph(g) {
			trainable = append(trainable, v)
		}
	}
	var accs []*model.Variable
	for _, v := range trainable {
		acc := scope.Store().Scope(accumulatedGradientsScope+v.Scope()).
			WithInitializer(initializer.Zero).
			VariableWithShape(v.Name(), v.Shape().Clone()).
			SetTrainable(false)
		accs = append(accs, acc)
	}
	if len(accs) != len(grads) {
		panic("gradient accumulation: the trainable variables changed while the graph was built")
	}
	for i, acc := range accs {
		grads[i] = Add(acc.NodeValue(g), grads[i])
		if !apply {
			acc.SetNodeValue(grads[i])
		}
	}
	if !apply {
		return
	}
	for i := range grads {
		grads[i] = MulScalar(grads[i], 1/float64(k))
	}
	opt.(withGradients).UpdateGraphWithGradients(scope, grads, dtypes.Float32)
	for _, acc := range accs {
		acc.SetNodeValue(Zeros(g, acc.Shape()))
	}
}
