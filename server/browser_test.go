//go:build browser

// The end-to-end test of the web page in headless Chromium. It needs the
// module github.com/chromedp/chromedp and a Chromium binary (Debian's
// chromium package; or set SEGSAM_CHROMIUM), so it only builds with
// -tags browser:
//
//	go test -tags browser -run TestBrowser ./server/
//
// SEGSAM_SCREENSHOT=/path/shot.png keeps the screenshot it takes.
package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/segsam/segsam/segsam"
)

// findChromium returns the browser to drive.
func findChromium(t *testing.T) string {
	if p := os.Getenv("SEGSAM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install Debian's chromium package or set SEGSAM_CHROMIUM")
	return ""
}

// rect is the overlay's position in CSS pixels and its CSS pixels per image
// pixel (Width, Height).
type rect struct{ Left, Top, Width, Height float64 }

func TestBrowser(t *testing.T) {
	loadModels(t)
	s, err := New(segModel, Config{})
	if err != nil {
		t.Fatal(err)
	}
	// "Label everything" with a small grid and no thresholds: the random
	// weights' masks pass no IoU or stability filter.
	auto := segsam.DefaultAMGOptions()
	auto.PointsPerSide, auto.PredIoUThresh, auto.StabilityScoreThresh = 3, 0, 0
	if err := s.SetAutomaticDefaults(auto); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopServer := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, ln) }()
	defer func() {
		stopServer()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()

	// Pick a click whose mask is neither empty nor the whole image (the
	// weights are random), through the API, to compare with the page.
	probe := upload(t, base, demoImage, "")
	var click Point
	var want PredictResponse
	for _, p := range [][2]float64{{128, 128}, {90, 110}, {160, 90}, {60, 60}, {200, 180}, {128, 60}, {40, 200}} {
		res := predict(t, base, probe.ID, PredictRequest{Points: []Point{{X: p[0], Y: p[1]}}, Format: "rle"})
		if a := res.Prompts[0].Masks[0].Area; a > 0 && a < res.Width*res.Height {
			click, want = Point{X: p[0], Y: p[1]}, res
			break
		}
	}
	if want.Prompts == nil {
		t.Fatal("no probe click gives a partial mask")
	}
	wantP := want.Prompts[0]
	t.Logf("click (%g,%g): API says %s %.1f %%, %d px", click.X, click.Y, wantP.Class, 100**wantP.Confidence, wantP.Masks[0].Area)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(findChromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	var logs []string
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }))
	defer cancelCtx()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()
	defer func() {
		if t.Failed() {
			for _, l := range logs {
				t.Log("chromium:", l)
			}
		}
	}()

	image, err := filepath.Abs(demoImage)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#legend span")),
		chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{image}),
		chromedp.WaitVisible(chromedp.CSS("#stage")),
		chromedp.Poll[chromedp.Void](`state.width === 256`, chromedp.WithPollingTimeout(20*time.Second)),
	); err != nil {
		t.Fatalf("open the page and upload: %v", err)
	}
	model, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#model")))
	if err != nil || !strings.Contains(model, "SEG-SAM") {
		t.Errorf("model line %q: %v", model, err)
	}

	// clickAt clicks image pixel (x, y) with a mouse button.
	clickAt := func(x, y float64, button input.MouseButton) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			r, err := chromedp.Evaluate[rect](`(() => { const r = document.getElementById('overlay').getBoundingClientRect(); return {Left: r.left, Top: r.top, Width: r.width / state.width, Height: r.height / state.height}; })()`)(ctx, tg)
			if err != nil {
				return err
			}
			px, py := r.Left+x*r.Width, r.Top+y*r.Height
			_, err = chromedp.MouseClickXY(px, py, chromedp.ButtonType(button))(ctx, tg)
			return err
		})
	}

	if err := chromedp.Do(ctx,
		clickAt(click.X, click.Y, input.MouseButtonLeft),
		chromedp.WaitVisible(chromedp.CSS("#overlay-label")),
	); err != nil {
		t.Fatalf("click: %v", err)
	}
	label, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#overlay-label")))
	if err != nil {
		t.Fatal(err)
	}
	details, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#result-details")))
	if err != nil {
		t.Fatal(err)
	}
	// The page's mask (decoded from the RLE it received) and the overlay's
	// painted pixels.
	pageArea, err := chromedp.Run(ctx, chromedp.Evaluate[int](`view().mask.reduce((a, b) => a + b, 0)`))
	if err != nil {
		t.Fatal(err)
	}
	painted, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(() => { const o = document.getElementById('overlay'); const d = o.getContext('2d').getImageData(0, 0, o.width, o.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()`))
	if err != nil {
		t.Fatal(err)
	}
	// The page sent the click in its own coordinates (the browser rounds
	// mouse positions): ask the API for the same prompt.
	sent, err := chromedp.Run(ctx, chromedp.Evaluate[[]Point](`view().points`))
	if err != nil || len(sent) != 1 || math.Abs(sent[0].X-click.X) > 1 || math.Abs(sent[0].Y-click.Y) > 1 || sent[0].Label == nil || *sent[0].Label != 1 {
		t.Fatalf("the page's points %+v (%v), want one positive point near (%g,%g)", sent, err, click.X, click.Y)
	}
	want = predict(t, base, probe.ID, PredictRequest{Points: sent, Format: "rle"})
	wantP = want.Prompts[0]
	wantLabel := fmt.Sprintf("%s %.1f %%", wantP.Class, 100**wantP.Confidence)
	if label != wantLabel {
		t.Errorf("overlay label %q, want %q", label, wantLabel)
	}
	found := false
	for _, c := range testClasses {
		found = found || strings.HasPrefix(label, c+" ")
	}
	if !found {
		t.Errorf("overlay label %q names no class of %v", label, testClasses)
	}
	if pageArea != wantP.Masks[0].Area || painted == 0 {
		t.Errorf("page mask %d pixels (%d painted on the overlay), the API's %d", pageArea, painted, wantP.Masks[0].Area)
	}
	if !strings.Contains(details, fmt.Sprintf("%d px", wantP.Masks[0].Area)) {
		t.Errorf("result details %q lack the mask area %d", details, wantP.Masks[0].Area)
	}

	// Screenshot for a person to look at.
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := os.Getenv("SEGSAM_SCREENSHOT")
	if path == "" {
		path = filepath.Join(t.TempDir(), "segsam_page.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))

	// A right click adds a negative point; undo goes back to the single
	// point and its label; clear removes the mask and the label.
	if err := chromedp.Do(ctx,
		clickAt(20, 20, input.MouseButtonRight),
		chromedp.Poll[chromedp.Void](`document.getElementById('undo').disabled === false && document.querySelectorAll('#overlay').length === 1`),
		chromedp.Click(chromedp.CSS("#undo")),
		chromedp.Poll[chromedp.Void](`document.getElementById('overlay-label').textContent !== ''`),
		chromedp.Click(chromedp.CSS("#clear")),
		chromedp.WaitNotVisible(chromedp.CSS("#overlay-label")),
	); err != nil {
		t.Fatalf("negative point, undo, clear: %v", err)
	}
	// "Label everything": the page lists the classes the API answers and
	// paints them; clear removes them.
	code, body, _ := do(t, "POST", base+"/v1/images/"+probe.ID+"/segment-all", "application/json", []byte(`{"format": "rle"}`))
	if code != 200 {
		t.Fatalf("segment-all: %d %s", code, body)
	}
	var all SegmentAllResponse
	if err := json.Unmarshal(body, &all); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#label-all")),
		chromedp.WaitVisible(chromedp.CSS("#auto-classes span")),
	); err != nil {
		t.Fatalf("label everything: %v", err)
	}
	pageClasses, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`view().auto.classes.map((c) => c.name)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(pageClasses) != len(all.Classes) || len(pageClasses) == 0 {
		t.Errorf("page lists classes %v, the API %+v", pageClasses, all.Classes)
	}
	for i, c := range all.Classes {
		if i < len(pageClasses) && pageClasses[i] != c.Name {
			t.Errorf("page class %d %q, API %q", i, pageClasses[i], c.Name)
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#clear")),
		chromedp.WaitNotVisible(chromedp.CSS("#auto-result")),
	); err != nil {
		t.Fatalf("clear the label map: %v", err)
	}

	// A NIfTI volume: the slice slider and the window presets, a click on
	// slice axial:10, the mask's class label, and the label-map download
	// enabled.
	volume, err := filepath.Abs(demoVolume)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{volume}),
		chromedp.WaitVisible(chromedp.CSS("#volume-controls")),
		chromedp.Poll[chromedp.Void](`state.image && state.image.kind === 'volume' && state.width === state.image.volume.slices.axial.width`, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Evaluate[chromedp.Void](`(() => {
			const w = document.getElementById('window'); w.value = 'soft'; w.dispatchEvent(new Event('change'));
			const s = document.getElementById('slice'); s.value = '10'; s.dispatchEvent(new Event('input'));
			})()`),
		chromedp.Poll[chromedp.Void](`document.getElementById('slice-label').textContent.startsWith('10 /')`),
		chromedp.Sleep(200*time.Millisecond), // the slice image loads
	); err != nil {
		t.Fatalf("open a volume: %v", err)
	}
	vw, err := chromedp.Run(ctx, chromedp.Evaluate[[2]float64](`[state.width, state.height]`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		clickAt(vw[0]/2, vw[1]/2, input.MouseButtonLeft),
		chromedp.Poll[chromedp.Void](`view().result !== null && document.getElementById('overlay-label').textContent !== ''`),
		chromedp.Poll[chromedp.Void](`document.getElementById('download-labels').disabled === false`),
	); err != nil {
		t.Fatalf("click on a volume slice: %v", err)
	}
	key, err := chromedp.Run(ctx, chromedp.Evaluate[string](`viewKey() + '@' + document.getElementById('window').value`))
	if err != nil || key != "axial:10@soft" {
		t.Errorf("volume view %q (%v), want axial:10@soft", key, err)
	}
	vlabel, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#overlay-label")))
	if err != nil {
		t.Fatal(err)
	}
	found = false
	for _, c := range testClasses {
		found = found || strings.HasPrefix(vlabel, c+" ")
	}
	if !found {
		t.Errorf("volume overlay label %q names no class", vlabel)
	}
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	vpath := strings.TrimSuffix(path, ".png") + "_volume.png"
	if err := os.WriteFile(vpath, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", vpath)

	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(status, "predict:") {
		t.Errorf("page status shows an error: %q", status)
	}
}
