package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segsam/segsam/internal/progress"
	"github.com/segsam/segsam/knowledge"
	"github.com/segsam/segsam/textembed"
)

func init() {
	register(command{
		name:    "text",
		summary: "class knowledge and text embeddings for T2VSE (list, show, embed)",
		run:     runText,
	})
}

// textStdout receives the text command's results (tests replace it).
var textStdout io.Writer = os.Stdout

const textSynopsis = `list | show CLASS | embed [flags]

  list          the known classes (canonical name, category, modalities)
  show CLASS    a class (name or alias) and its description
  embed         embed the descriptions of a class list into FILE.npy + FILE.json

Run 'segsam text embed -h' for the embedding flags.`

func runText(args []string) error {
	if len(args) == 0 {
		return usageErrorf("missing subcommand: list, show CLASS or embed (see 'segsam text -h')")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stderr, "usage: segsam text %s\n", textSynopsis)
		return flag.ErrHelp
	case "list":
		return textList(args[1:])
	case "show":
		return textShow(args[1:])
	case "embed":
		return textEmbed(args[1:])
	}
	return usageErrorf("unknown subcommand %q: want list, show or embed", args[0])
}

func textList(args []string) error {
	fs := newFlagSet("text list", "[--category CAT] [--aliases]")
	category := fs.String("category", "", "only classes of this category ("+strings.Join(knowledge.Categories, ", ")+")")
	aliases := fs.Bool("aliases", false, "also print each class's aliases")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *category != "" && !slices.Contains(knowledge.Categories, *category) {
		return usageErrorf("unknown category %q: want one of %s", *category, strings.Join(knowledge.Categories, ", "))
	}
	tw := tabwriter.NewWriter(textStdout, 0, 0, 2, ' ', 0)
	n := 0
	for _, c := range knowledge.Classes() {
		if *category != "" && c.Category != *category {
			continue
		}
		n++
		line := fmt.Sprintf("%s\t%s\t%s\t%s", c.Name, c.Category, strings.Join(c.Modalities, ","), c.Display)
		if *aliases {
			line += "\t" + strings.Join(c.Aliases, ", ")
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(textStdout, "# %d classes, class knowledge version %s\n", n, knowledge.Version())
	return nil
}

func textShow(args []string) error {
	fs := newFlagSet("text show", "CLASS\n\nPrints a class (canonical name or alias, see 'segsam text list --aliases'): its\ncategory, modalities, aliases and the texture, shape and position description\nthat 'segsam text embed' embeds.")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			printHelp(fs)
			return err
		}
		return usageErrorf("%v (see 'segsam text show -h')", err)
	}
	if fs.NArg() != 1 {
		return usageErrorf("want exactly one class name, got %d arguments", fs.NArg())
	}
	name := fs.Arg(0)
	c, ok := knowledge.Lookup(name)
	if !ok {
		return fmt.Errorf("unknown class %q (class knowledge %s); see 'segsam text list --aliases'", name, knowledge.Version())
	}
	w := textStdout
	fmt.Fprintf(w, "%s (%s)\n", c.Name, c.Display)
	fmt.Fprintf(w, "category:   %s\n", c.Category)
	fmt.Fprintf(w, "modalities: %s\n", strings.Join(c.Modalities, ", "))
	fmt.Fprintf(w, "aliases:    %s\n", strings.Join(c.Aliases, ", "))
	fmt.Fprintf(w, "knowledge:  version %s\n\n", knowledge.Version())
	fmt.Fprintf(w, "Texture:  %s\nShape:    %s\nPosition: %s\n\n", c.Texture, c.Shape, c.Position)
	fmt.Fprintf(w, "embedded text:\n%s\n", c.Description())
	return nil
}

// embedProviderFlags are the flags of 'segsam text embed', grouped by provider.
var embedProviderFlags = map[string][]string{
	"hashed": {"dim"},
	"file":   {"file"},
	"openai": {"base-url", "model", "api-key-env", "batch", "cache", "timeout", "retries", "dimensions"},
}

func textEmbed(args []string) error {
	fs := newFlagSet("text embed", "--provider hashed|file|openai (--classes a,b,c | --data DIR) --out FILE.npy [flags]")
	provider := fs.String("provider", "hashed", "embedding provider: hashed (offline, no download; weaker than a language model), file, or openai (any OpenAI-compatible /v1/embeddings server)")
	classList := fs.String("classes", "", "comma-separated class names, in the model's class order")
	dataDir := fs.String("data", "", "dataset directory (or its meta.json) whose \"classes\" list to embed")
	descFile := fs.String("descriptions", "", "JSON object of class name -> description, for classes the knowledge lacks or to override it")
	out := fs.String("out", "", "output .npy (a .json sidecar with provider, model, classes, texts and fingerprint is written next to it)")
	dim := fs.Int("dim", textembed.DefaultHashedDim, "hashed: vector length")
	file := fs.String("file", "", "file: embeddings .npy to read (with its .json sidecar or class-name list)")
	baseURL := fs.String("base-url", textembed.DefaultOpenAIBaseURL, "openai: server base URL (e.g. http://localhost:11434 for a local server)")
	model := fs.String("model", textembed.DefaultOpenAIModel, "openai: embedding model name")
	keyEnv := fs.String("api-key-env", textembed.DefaultOpenAIAPIKeyEnv, "openai: environment variable holding the API key (unset: no key is sent)")
	batch := fs.Int("batch", textembed.DefaultOpenAIBatchSize, "openai: texts per request")
	cacheDir := fs.String("cache", "", "openai: directory caching vectors by provider, URL, model and text")
	timeout := fs.Duration("timeout", textembed.DefaultOpenAITimeout, "openai: timeout per request")
	retries := fs.Int("retries", textembed.DefaultOpenAIMaxRetries, "openai: retries on 429, 5xx and timeouts (0: none)")
	dimensions := fs.Int("dimensions", 0, "openai: request vectors of this length (text-embedding-3 models); 0: the model's own")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	own, ok := embedProviderFlags[*provider]
	if !ok {
		return usageErrorf("unknown --provider %q: want hashed, file or openai", *provider)
	}
	var usageErr error
	fs.Visit(func(f *flag.Flag) {
		for p, names := range embedProviderFlags {
			if p != *provider && slices.Contains(names, f.Name) && !slices.Contains(own, f.Name) && usageErr == nil {
				usageErr = usageErrorf("--%s applies to --provider %s, not %s", f.Name, p, *provider)
			}
		}
	})
	if usageErr != nil {
		return usageErr
	}
	if *out == "" {
		return usageErrorf("--out FILE.npy is required")
	}
	if !strings.HasSuffix(*out, ".npy") {
		return usageErrorf("--out %q must end in .npy", *out)
	}
	if (*classList == "") == (*dataDir == "") {
		return usageErrorf("give exactly one of --classes and --data")
	}
	var classes []string
	if *classList != "" {
		for _, c := range strings.Split(*classList, ",") {
			if c = strings.TrimSpace(c); c != "" {
				classes = append(classes, c)
			}
		}
		if len(classes) == 0 {
			return usageErrorf("--classes %q names no class", *classList)
		}
	} else {
		var err error
		if classes, err = textembed.ReadClassList(*dataDir); err != nil {
			return err
		}
	}
	var opts []textembed.BuildOption
	if *descFile != "" {
		d, err := textembed.ReadDescriptions(*descFile)
		if err != nil {
			return err
		}
		opts = append(opts, textembed.WithDescriptions(d))
	}

	var p textembed.Provider
	var oa *textembed.OpenAI
	switch *provider {
	case "hashed":
		h, err := textembed.NewHashed(*dim)
		if err != nil {
			return usageErrorf("--dim: %v", err)
		}
		p = h
	case "file":
		if *file == "" {
			return usageErrorf("--provider file needs --file FILE.npy")
		}
		f, err := textembed.OpenFile(*file)
		if err != nil {
			return err
		}
		p = f
	case "openai":
		if *batch <= 0 || *timeout <= 0 || *retries < 0 || *dimensions < 0 {
			return usageErrorf("--batch and --timeout must be positive, --retries and --dimensions not negative")
		}
		r := *retries
		if r == 0 {
			r = -1 // OpenAIConfig: negative disables retries
		}
		var err error
		oa, err = textembed.NewOpenAI(textembed.OpenAIConfig{
			BaseURL: *baseURL, Model: *model, APIKeyEnv: *keyEnv, BatchSize: *batch,
			Timeout: *timeout, MaxRetries: r, CacheDir: *cacheDir, Dimensions: *dimensions,
		})
		if err != nil {
			return usageErrorf("%v", err)
		}
		p = oa
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bar := progress.New(stderr, len(classes), "embed "+*provider)
	done := 0
	opts = append(opts, textembed.WithProgress(func(n, total int) {
		bar.Add(n - done)
		done = n
	}))
	start := time.Now()
	set, err := textembed.Build(ctx, p, classes, opts...)
	bar.Done()
	if err != nil {
		return err
	}
	if err := textembed.Save(*out, set); err != nil {
		return err
	}
	fmt.Fprintf(textStdout, "wrote %d classes x %d (provider %s, model %s) to %s and %s in %v\n",
		len(set.Classes), set.Dim(), set.Provider, set.Model, *out, textembed.SidecarPath(*out), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(textStdout, "fingerprint %s\n", set.Fingerprint())
	if oa != nil {
		s := oa.Stats()
		fmt.Fprintf(textStdout, "requests %d (retries %d), cache hits %d, misses %d\n", s.Requests, s.Retries, s.CacheHits, s.CacheMisses)
	}
	return nil
}
