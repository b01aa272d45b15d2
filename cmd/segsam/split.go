package main

// The group split of a set into train and val parts, shared by 'segsam
// train' (which holds out the val part) and 'segsam eval --split', so that
// evaluating "the held-out part" with the defaults uses the very split
// training held out.
const (
	// defaultValFraction is the share of groups (patients, volumes) in the
	// val part.
	defaultValFraction = 0.15
	// defaultSplitSeed seeds the group split.
	defaultSplitSeed = 1
)
