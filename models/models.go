// Package models holds the model built into segsam: a small SEG-SAM trained
// by segsam itself on the demo data (see MODEL_CARD.md), so that predict,
// eval, serve and demo work offline from a fresh clone with no download.
package models

import (
	_ "embed"
	"fmt"

	"github.com/gomlx/compute"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

// DefaultName names the built-in model in messages and tables.
const DefaultName = "segsam_small"

//go:embed segsam_small.safetensors
var defaultCheckpoint []byte

// Default loads the built-in SEG-SAM model.
func Default(backend compute.Backend) (*segsam.Model, error) {
	sd, err := checkpoint.ParseSafetensors(defaultCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("built-in model: %w", err)
	}
	m, err := segsam.FromStateDict(sd, backend)
	if err != nil {
		return nil, fmt.Errorf("built-in model: %w", err)
	}
	return m, nil
}

// Example is the bundled example of `segsam demo`: an image of the built-in
// model's validation split (never seen in training), a box prompt around one
// annotated object, and that object's ground-truth mask.
type Example struct {
	Name   string
	Image  []byte // PNG
	Box    sam.Box
	Class  string // ground-truth class of the boxed object
	Mask   []byte // PNG, ground truth of the boxed object
	Source string // origin and licence
}

var (
	//go:embed example/amos_0006_90.png
	exampleImage []byte
	//go:embed example/amos_0006_90_liver_000.png
	exampleMask []byte
)

// DefaultExample is an abdominal CT slice (AMOS 2022 via SA-Med2D-16M's demo
// data) with a box around the liver: the mask's tight extent.
var DefaultExample = Example{
	Name:   "amos_0006_90.png",
	Image:  exampleImage,
	Box:    sam.Box{48, 94, 134, 177},
	Class:  "liver",
	Mask:   exampleMask,
	Source: "AMOS 2022 CT (CC BY 4.0), as redistributed in OpenGVLab/SAM-Med2D data_demo (Apache-2.0); see models/example/SOURCES.md",
}
