package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/segsam/segsam/sam"
)

// floatList parses "a,b,c" into exactly n (or, with optional, n-1) floats.
func floatList(s string, n int, what string) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("%s %q: want %d comma-separated numbers", what, s, n)
	}
	out := make([]float64, n)
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %q is not a number", what, s, p)
		}
		out[i] = v
	}
	return out, nil
}

// pointFlags collects repeated --point X,Y[,LABEL] flags.
type pointFlags []sam.Point

func (p *pointFlags) String() string { return fmt.Sprint(*p) }

func (p *pointFlags) Set(s string) error {
	n := len(strings.Split(s, ","))
	if n != 2 && n != 3 {
		return fmt.Errorf("point %q: want X,Y or X,Y,LABEL", s)
	}
	v, err := floatList(s, n, "point")
	if err != nil {
		return err
	}
	pt := sam.Point{X: v[0], Y: v[1], Label: sam.LabelPositive}
	if n == 3 {
		if v[2] != 0 && v[2] != 1 {
			return fmt.Errorf("point %q: label must be 1 (positive) or 0 (negative)", s)
		}
		pt.Label = int(v[2])
	}
	*p = append(*p, pt)
	return nil
}

// boxFlags collects repeated --box X0,Y0,X1,Y1 flags.
type boxFlags []sam.Box

func (b *boxFlags) String() string { return fmt.Sprint(*b) }

func (b *boxFlags) Set(s string) error {
	v, err := floatList(s, 4, "box")
	if err != nil {
		return err
	}
	*b = append(*b, sam.Box{v[0], v[1], v[2], v[3]})
	return nil
}

func presetOK(name string) (sam.Config, error) { return sam.Preset(name) }
