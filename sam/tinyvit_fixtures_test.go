package sam

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/transform"
)

// The TinyViT reference fixtures of testdata/fixtures/{mobilesam_mini,
// litemedsam_mini}: tiny random-weight models run through the official
// MobileSAM predictor and LiteMedSAM inference steps (testdata/SOURCES.md
// says how they were made). Large outputs are stored subsampled: low-res
// logits [..., ::8, ::8], embeddings [..., ::4, ::4].
type miniCase struct {
	ID        string `json:"id"`
	Image     string `json:"image"`
	Multimask bool   `json:"multimask_output"`
	Inputs    struct {
		PointCoords string `json:"point_coords"`
		PointLabels string `json:"point_labels"`
		Box         string `json:"box"`
		MaskInput64 string `json:"mask_input_64"`
	} `json:"inputs"`
	Outputs struct {
		Masks  string `json:"masks"`
		IoU    string `json:"iou_predictions"`
		LowRes string `json:"low_res_logits_sub8"`
	} `json:"outputs"`
}

type miniIndex struct {
	Images map[string]struct {
		NPY          string `json:"npy"`
		Features     string `json:"features_sub4"`
		InputResized string `json:"input_resized"`
	} `json:"images"`
	Cases []miniCase `json:"cases"`
}

// subsample takes every step-th row and column of the trailing two axes of
// a [..., h, w] array.
func subsample(data []float32, h, w, step int) []float32 {
	var out []float32
	for p := 0; p < len(data)/(h*w); p++ {
		for y := 0; y < h; y += step {
			for x := 0; x < w; x += step {
				out = append(out, data[p*h*w+y*w+x])
			}
		}
	}
	return out
}

func TestTinyViTFixtureParity(t *testing.T) {
	for _, c := range []struct {
		name   string
		family Family
		stages int
	}{{"mobilesam_mini", FamilySAM, 3}, {"litemedsam_mini", FamilyLiteMedSAM, 3}} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(fixtures, c.name)
			cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			sd, err := checkpoint.Load(filepath.Join(dir, c.name+".pth"))
			if err != nil {
				t.Fatal(err)
			}
			// The weights alone give the same architecture as config.json.
			inf, err := InferConfig(sd)
			if err != nil {
				t.Fatal(err)
			}
			if inf.Family != c.family || cfg.Family != c.family {
				t.Errorf("family: config %s, inferred %s, want %s", cfg.Family, inf.Family, c.family)
			}
			if err := want(inf.TinyViT, cfg.TinyViT.EmbedDims, cfg.TinyViT.Depths, cfg.TinyViT.NumHeads, cfg.TinyViT.WindowSizes[1:], cfg.TinyViT.ImgSize); err != nil {
				t.Error(err)
			}
			if a, b := fmt.Sprintf("%+v %+v %+v", inf.PromptEncoder, inf.MaskDecoder, inf.ImageEncoder), fmt.Sprintf("%+v %+v %+v", cfg.PromptEncoder, cfg.MaskDecoder, cfg.ImageEncoder); a != b {
				t.Errorf("inferred %s\nconfig   %s", a, b)
			}
			if len(inf.TinyViT.EmbedDims) != c.stages || inf.TinyViT.LocalConvSize != cfg.TinyViT.LocalConvSize ||
				inf.TinyViT.MLPRatio != cfg.TinyViT.MLPRatio || inf.TinyViT.MBConvExpandRatio != cfg.TinyViT.MBConvExpandRatio {
				t.Errorf("inferred %+v, config %+v", *inf.TinyViT, *cfg.TinyViT)
			}
			m, err := NewModel(inf, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetWeights(sd); err != nil {
				t.Fatal(err)
			}
			var idx miniIndex
			data, err := os.ReadFile(filepath.Join(dir, "cases.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &idx); err != nil {
				t.Fatal(err)
			}
			worst := worstDiffs{}
			preds := map[string]*Predictor{}
			for name, im := range idx.Images {
				img := fixtureImageRGB(t, dir, im.NPY)
				if im.InputResized != "" {
					// OpenCV INTER_AREA, bit for bit.
					want, err := readNpy(t, dir, im.InputResized).Uint8()
					if err != nil {
						t.Fatal(err)
					}
					nh, nw := transform.PreprocessShape(img.H, img.W, cfg.ImageEncoder.ImgSize)
					got, err := transform.ResizeAreaCV2(img.Pix, img.H, img.W, 3, nh, nw)
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("%s: resized input differs from OpenCV", name)
					}
				}
				p := NewPredictor(m)
				if err := p.SetImage(img); err != nil {
					t.Fatal(err)
				}
				emb, _ := tensors.CopyFlatData[float32](p.Embedding())
				g := m.Config.TokenGrid()
				d, ok := maxDiff(subsample(emb, g, g, 4), readNpy(t, dir, im.Features).Float32())
				worst.add("embedding", d)
				if !ok {
					t.Errorf("%s: embedding differs by %.3g", name, d)
				}
				preds[name] = p
			}
			if len(idx.Cases) < 4 {
				t.Fatalf("only %d cases", len(idx.Cases))
			}
			for _, k := range idx.Cases {
				t.Run(k.ID, func(t *testing.T) {
					pr := Prompt{Multimask: k.Multimask}
					if k.Inputs.PointCoords != "" {
						xy := readNpy(t, dir, k.Inputs.PointCoords).Float64()
						labels, err := readNpy(t, dir, k.Inputs.PointLabels).Int32()
						if err != nil {
							t.Fatal(err)
						}
						for i, l := range labels {
							pr.Points = append(pr.Points, Point{X: xy[2*i], Y: xy[2*i+1], Label: int(l)})
						}
					}
					if k.Inputs.Box != "" {
						b := readNpy(t, dir, k.Inputs.Box).Float64()
						pr.Boxes = []Box{{b[0], b[1], b[2], b[3]}}
					}
					if k.Inputs.MaskInput64 != "" {
						// mask_input = the 64x64 pattern repeated 4x4.
						small := readNpy(t, dir, k.Inputs.MaskInput64).Float32()
						s := m.Config.LowResSize()
						pr.MaskInput = make([]float32, s*s)
						for y := range s {
							for x := range s {
								pr.MaskInput[y*s+x] = small[(y/4)*64+x/4]
							}
						}
					}
					res, err := preds[k.Image].Predict(pr)
					if err != nil {
						t.Fatal(err)
					}
					s := res.LowResSize
					for _, q := range []struct {
						name      string
						got, want []float32
					}{
						{"masks", res.Masks, readNpy(t, dir, k.Outputs.Masks).Float32()},
						{"iou", res.IoU, readNpy(t, dir, k.Outputs.IoU).Float32()},
						{"low_res_logits", subsample(res.LowRes, s, s, 8), readNpy(t, dir, k.Outputs.LowRes).Float32()},
					} {
						d, ok := maxDiff(q.got, q.want)
						worst.add(q.name, d)
						if !ok {
							t.Errorf("%s differ by %.3g (%d vs %d values)", q.name, d, len(q.got), len(q.want))
						}
					}
				})
			}
			worst.log(t)
		})
	}
}

// TestTinyViTSharedFixtureParity runs the full-size-layout TinyViT fixtures
// (the project's shared mobilesam_tiny/ and litemedsam_tiny/ fixture
// folders, 18 MB each, not in the repository) when SEGSAM_TINYVIT_FIXTURES
// names their parent folder.
// The suite's own parity check is TestTinyViTFixtureParity.
func TestTinyViTSharedFixtureParity(t *testing.T) {
	root := os.Getenv("SEGSAM_TINYVIT_FIXTURES")
	if root == "" {
		t.Skip("SEGSAM_TINYVIT_FIXTURES not set (folder holding mobilesam_tiny/ and litemedsam_tiny/); TestTinyViTFixtureParity covers the suite")
	}
	for _, name := range []string{"mobilesam_tiny", "litemedsam_tiny"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Load(filepath.Join(dir, name+".pth"), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			idx := readIndex(t, dir)
			worst := worstDiffs{}
			preds := map[string]*Predictor{}
			for imgName, img := range idx.Images {
				p := NewPredictor(m)
				if err := p.SetImage(fixtureImageRGB(t, dir, img.NPY)); err != nil {
					t.Fatal(err)
				}
				got, _ := tensors.CopyFlatData[float32](p.Embedding())
				d, ok := maxDiff(got, readNpy(t, dir, img.Features).Float32())
				worst.add("embedding", d)
				if !ok {
					t.Errorf("%s: embedding differs by %.3g", imgName, d)
				}
				preds[imgName] = p
			}
			for _, c := range idx.Cases {
				t.Run(c.ID, func(t *testing.T) {
					res, err := preds[c.Image].Predict(fixturePrompt(t, dir, c))
					if err != nil {
						t.Fatal(err)
					}
					for _, q := range []struct {
						name, file string
						got        []float32
					}{{"masks", c.Outputs.Masks, res.Masks}, {"iou", c.Outputs.IoU, res.IoU}, {"low_res_logits", c.Outputs.LowRes, res.LowRes}} {
						d, ok := maxDiff(q.got, readNpy(t, dir, q.file).Float32())
						worst.add(q.name, d)
						if !ok {
							t.Errorf("%s differ by %.3g", q.name, d)
						}
					}
				})
			}
			worst.log(t)
		})
	}
}
