package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/models"
	"github.com/segsam/segsam/npy"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

func init() {
	register(command{
		name:    "predict",
		summary: "segment an image from point / box / mask prompts",
		run:     runPredict,
	})
}

// predictResult is what predict writes to result.json.
type predictResult struct {
	Checkpoint string      `json:"checkpoint"`
	Arch       string      `json:"arch"`
	Family     sam.Family  `json:"family"`
	Image      string      `json:"image"`
	Width      int         `json:"width"`
	Height     int         `json:"height"`
	Prompts    int         `json:"prompts"`
	MasksPer   int         `json:"masks_per_prompt"`
	IoU        [][]float32 `json:"iou_predictions"`
	MaskFiles  []string    `json:"mask_files"`
	MaskPixels []int       `json:"mask_pixels"`
	LowResSize int         `json:"low_res_size"`
	TimingsMS  timings     `json:"timings_ms"`
	Points     []sam.Point `json:"points,omitempty"`
	Boxes      []sam.Box   `json:"boxes,omitempty"`
	MaskInput  string      `json:"mask_input,omitempty"`
	Multimask  bool        `json:"multimask"`
	BinaryRule string      `json:"binary_rule"`
	NPYLayout  string      `json:"npy_layout"`
	// SEG-SAM checkpoints only: per prompt, the object's class and its
	// confidence; the semantic masks; the class presence scores (in the
	// order of classes).
	Objects       []objectClass `json:"objects,omitempty"`
	SemanticFiles []string      `json:"semantic_mask_files,omitempty"`
	Classes       []string      `json:"classes,omitempty"`
	Presence      [][]float32   `json:"presence_scores,omitempty"`
	Slice         string        `json:"slice,omitempty"`
}

// objectClass is a prompted object's predicted class.
type objectClass struct {
	Class      string  `json:"class"`
	Confidence float32 `json:"confidence"`
}

type timings struct {
	Load   float64 `json:"load"`
	Encode float64 `json:"encode"`
	Decode float64 `json:"decode"`
	Post   float64 `json:"postprocess"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runPredict(args []string) error {
	fs := newFlagSet("predict", "--checkpoint FILE [--arch NAME | --config FILE.json] --image IMAGE [--point X,Y[,LABEL]]... [--box X0,Y0,X1,Y1]... [--mask-input FILE.npy] [--multimask] --out DIR\n\nPrompt "+coordinateRule+". With no --point, --box or --mask-input a plain SAM / SAM-Med2D checkpoint gives its prompt-free prediction, as the official predict() with no prompt (multimask by default there, as the official default; --multimask=false for the single-output token); a SEG-SAM checkpoint needs a point or a box.")
	var mf modelFlags
	mf.register(fs)
	var points pointFlags
	var boxes boxFlags
	imagePath := fs.String("image", "", "input image: PNG, JPEG, .npy (H×W×3 uint8), or a volume (NIfTI .nii/.nii.gz, DICOM folder) with --slice")
	slice := fs.String("slice", "", "for a volume: the slice to segment, AXIS:INDEX (axial, coronal, sagittal)")
	window := fs.String("window", "auto", "for a volume: intensity window: soft, lung, bone, brain, L,W, pLO,HI or auto")
	fs.Var(&points, "point", "a click X,Y[,LABEL] in image pixels (see below); LABEL 1 positive (default) or 0 negative; repeatable")
	fs.Var(&boxes, "box", "a box X0,Y0,X1,Y1 in image pixels (see below); repeatable (one prediction per box)")
	maskInput := fs.String("mask-input", "", "low-res mask logits from a previous run (.npy, [1,4g,4g] or [4g,4g])")
	modality := fs.String("modality", "", "the image's modality (CT, MR, PET, X-ray, ultrasound, endoscopy, dermoscopy, fundus): the class is chosen among the classes the model's training data had in it (SEG-SAM checkpoints that record them)")
	multimask := fs.Bool("multimask", false, "return 3 candidate masks (SAM) / the best of 3 (SAM-Med2D); default true when no prompt is given")
	out := fs.String("out", "", "output folder (created)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *imagePath == "" || *out == "" {
		return usageErrorf("--image and --out are required")
	}
	noPrompt := len(points) == 0 && len(boxes) == 0 && *maskInput == ""
	if noPrompt && !flagGiven(fs, "multimask") {
		// The official predictors' predict() defaults to multimask_output=True;
		// without any prompt the single-output token is a poor guess.
		*multimask = true
	}
	img, err := readInputImage(*imagePath, *slice, *window)
	if err != nil {
		return err
	}
	pr := sam.Prompt{Points: points, Boxes: boxes, Multimask: *multimask}
	if *maskInput != "" {
		a, err := npy.Read(*maskInput)
		if err != nil {
			return err
		}
		pr.MaskInput = a.Float32()
	}
	// Points and boxes need only the image: check them before the (slow)
	// checkpoint load.
	if err := sam.ValidatePromptGeometry(pr, img.H, img.W); err != nil {
		return usageErrorf("%v (%s)", err, coordinateRule)
	}
	start := time.Now()
	p, err := mf.load()
	if err != nil {
		return err
	}
	load := time.Since(start)
	m := p.SAM.Model
	if p.Model != nil && len(points)+len(boxes) == 0 {
		return usageErrorf("a SEG-SAM checkpoint needs a --point or a --box (--mask-input alone or no prompt works with plain SAM / SAM-Med2D checkpoints)")
	}
	// The mask input's size needs the model: before the (slow) encoder runs.
	if err := m.ValidatePrompt(pr, img.H, img.W); err != nil {
		return usageErrorf("%v (%s)", err, coordinateRule)
	}
	if err := p.SetImage(img); err != nil {
		return err
	}
	if *modality != "" {
		if p.Model == nil || !p.Model.Config.HasClasses() {
			return usageErrorf("--modality: this checkpoint predicts masks only, no class")
		}
		if p.Model.Config.ClassesOfModality(*modality) == nil {
			fmt.Fprintf(os.Stderr, "segsam predict: warning: the model records no classes for modality %q; the class is chosen among all of them\n", *modality)
		}
	}
	res, err := p.PredictIn(pr, *modality)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	info := predictResult{
		Checkpoint: checkpointName(mf.checkpoint), Arch: archName(p), Family: m.Config.Family, Image: *imagePath,
		Width: img.W, Height: img.H, Prompts: res.B, MasksPer: res.C, LowResSize: res.LowResSize,
		TimingsMS: timings{Load: ms(load), Encode: ms(p.SAM.Encode), Decode: ms(res.Decode), Post: ms(res.Post)},
		Points:    points, Boxes: boxes, MaskInput: *maskInput, Multimask: *multimask, Slice: *slice,
		BinaryRule: "mask_<i>.png pixel is on where the logit in masks.npy is > 0; i = prompt*masks_per_prompt + mask",
	}
	for b := 0; b < res.B; b++ {
		info.IoU = append(info.IoU, res.IoU[b*res.C:(b+1)*res.C])
		for c := 0; c < res.C; c++ {
			i := b*res.C + c
			name := fmt.Sprintf("mask_%d.png", i)
			n, err := writeMaskPNG(filepath.Join(*out, name), res.Mask(b, c), res.W, res.H)
			if err != nil {
				return err
			}
			info.MaskFiles = append(info.MaskFiles, name)
			info.MaskPixels = append(info.MaskPixels, n)
		}
	}
	// The .npy files keep the official predictors' layouts: [C, ...] for one
	// prompt, [B, C, ...] for several boxes.
	lead := []int{res.C}
	if res.B > 1 || m.Config.Family == sam.FamilyLiteMedSAM {
		// LiteMedSAM's inference script keeps the batch axis.
		lead = []int{res.B, res.C}
	}
	info.NPYLayout = fmt.Sprintf("masks.npy %v+[H W] logits, iou_predictions.npy %v, low_res_logits.npy %v+[%d %d], embedding.npy [1 C g g]", lead, lead, lead, res.LowResSize, res.LowResSize)
	emb, err := tensors.CopyFlatData[float32](p.SAM.Embedding())
	if err != nil {
		return err
	}
	files := []struct {
		name  string
		shape []int
		data  []float32
	}{
		{"masks.npy", append(append([]int{}, lead...), res.H, res.W), res.Masks},
		{"iou_predictions.npy", lead, res.IoU},
		{"low_res_logits.npy", append(append([]int{}, lead...), res.LowResSize, res.LowResSize), res.LowRes},
		{"embedding.npy", p.SAM.Embedding().Shape().Dimensions, emb},
	}
	if res.Semantic != nil {
		sl := lead[:len(lead)-1] // one semantic mask per prompt
		if res.B == 1 {
			sl = []int{1}
		}
		files = append(files, struct {
			name  string
			shape []int
			data  []float32
		}{"semantic_masks.npy", append(append([]int{}, sl...), res.H, res.W), res.Semantic})
		for b := 0; b < res.B; b++ {
			name := fmt.Sprintf("semantic_mask_%d.png", b)
			if _, err := writeMaskPNG(filepath.Join(*out, name), res.SemanticMask(b), res.W, res.H); err != nil {
				return err
			}
			info.SemanticFiles = append(info.SemanticFiles, name)
		}
	}
	if res.Class != nil {
		info.Classes = p.Classes()
		for b := 0; b < res.B; b++ {
			info.Objects = append(info.Objects, objectClass{Class: res.Class[b], Confidence: res.Confidence[b]})
		}
		info.Presence = res.Presence
	}
	for _, f := range files {
		if err := npy.Write(filepath.Join(*out, f.name), f.shape, f.data); err != nil {
			return err
		}
	}
	if err := writeResultJSON(filepath.Join(*out, "result.json"), info); err != nil {
		return err
	}
	for b := 0; b < res.B; b++ {
		best := res.Best(b)
		class := ""
		if res.Class != nil {
			class = fmt.Sprintf(", class %s (%.0f%%)", res.Class[b], 100*res.Confidence[b])
		}
		fmt.Printf("prompt %d: %d mask(s), best %s (predicted IoU %.3f, %d pixels)%s\n",
			b, res.C, info.MaskFiles[b*res.C+best], res.IoU[b*res.C+best], info.MaskPixels[b*res.C+best], class)
	}
	fmt.Printf("wrote %s (encode %.0f ms, decode %.1f ms)\n", *out, ms(p.SAM.Encode), ms(res.Decode))
	return nil
}

// coordinateRule is the prompt coordinate convention, for -h and errors.
const coordinateRule = "coordinates are original-image pixels, x right, y down, any real value in [0, width] x [0, height], both edges included; " +
	"as in the official SAM predictor an integer x names pixel column x (the model adds 0.5 to reach its centre)"

// builtinCheckpoint names the built-in model in result.json.
const builtinCheckpoint = "built-in:" + models.DefaultName

// checkpointName is the checkpoint recorded in result.json.
func checkpointName(path string) string {
	if path == "" {
		return builtinCheckpoint
	}
	return path
}

// writeResultJSON writes v indented, without HTML escaping (a rule reads
// "> 0", not "\u003e 0").
func writeResultJSON(path string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// writeMaskPNG writes a binary mask as an 8-bit PNG (0 / 255) and returns its
// number of on pixels.
func writeMaskPNG(path string, mask []bool, w, h int) (int, error) {
	img := image.NewGray(image.Rect(0, 0, w, h))
	n := 0
	for i, on := range mask {
		if on {
			img.Pix[i] = 255
			n++
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return n, f.Close()
}

// archName describes the loaded model for result.json.
func archName(p *segsam.Predictor) string {
	if p.Model != nil {
		return p.Model.Describe()
	}
	return p.SAM.Model.Config.Name
}
