// Command plot draws the load run's latency against offered rate, p50 and
// p99, for the floor, the cached and the uncached ES256 jwtauthz, from the
// open-loop rows of bench/run.sh's results.csv:
//
//	plot --csv bench/out/results.csv --out bench/out/latency.png
//
// It is a small hand-written line chart (image/png, a built-in 5×7 bitmap
// font, a log-scale latency axis), so the service's module needs no
// plotting dependency.
package main

import (
	"cmp"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

// point is one open-loop run; saturated when ghz achieved under 95 % of
// the offered rate.
type point struct {
	rate, p50, p99 float64
	saturated      bool
}

type series struct {
	target, label string
	color         color.RGBA
	points        []point
}

func run() error {
	csvPath := flag.String("csv", "bench/out/results.csv", "results.csv of a bench/run.sh run")
	out := flag.String("out", "bench/out/latency.png", "PNG to write")
	flag.Parse()

	all := []*series{
		{target: "floor", label: "floor (always allow)", color: color.RGBA{90, 90, 90, 255}},
		{target: "cached", label: "jwtauthz cached", color: color.RGBA{31, 100, 200, 255}},
		{target: "uncached-es256", label: "jwtauthz uncached es256", color: color.RGBA{210, 60, 40, 255}},
	}
	if err := load(*csvPath, all); err != nil {
		return err
	}
	var ss []*series
	for _, s := range all {
		if len(s.points) > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return errors.New("no open-loop rows in " + *csvPath)
	}
	img := draw(ss)
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func load(path string, ss []*series) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s: empty", path)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, k := range []string{"target", "mode", "offered_rps", "rps", "p50_ms", "p99_ms"} {
		if _, ok := col[k]; !ok {
			return fmt.Errorf("%s: no column %q", path, k)
		}
	}
	for _, rec := range recs[1:] {
		if rec[col["mode"]] != "open" {
			continue
		}
		rate, err1 := strconv.ParseFloat(rec[col["offered_rps"]], 64)
		p50, err2 := strconv.ParseFloat(rec[col["p50_ms"]], 64)
		p99, err3 := strconv.ParseFloat(rec[col["p99_ms"]], 64)
		achieved, err4 := strconv.ParseFloat(rec[col["rps"]], 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || p50 <= 0 || p99 <= 0 {
			continue
		}
		for _, s := range ss {
			if s.target == rec[col["target"]] {
				s.points = append(s.points, point{rate, p50, p99, achieved < 0.95*rate})
			}
		}
	}
	for _, s := range ss {
		slices.SortFunc(s.points, func(a, b point) int { return cmp.Compare(a.rate, b.rate) })
	}
	return nil
}

const (
	width, height = 1100, 660
	left, right   = 100, 330 // plot area margins; the legend is on the right
	top, bottom   = 95, 80
	scale         = 2 // font pixels per glyph pixel
)

var (
	white = color.RGBA{255, 255, 255, 255}
	black = color.RGBA{20, 20, 20, 255}
	grid  = color.RGBA{225, 225, 225, 255}
	minor = color.RGBA{242, 242, 242, 255}
)

func draw(ss []*series) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), white)

	// Axes ranges: x from 0 to the highest rate (rounded up to a tick);
	// y in whole decades around every latency.
	maxRate, lo, hi := 0.0, math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, p := range s.points {
			maxRate = max(maxRate, p.rate)
			lo, hi = min(lo, p.p50, p.p99), max(hi, p.p50, p.p99)
		}
	}
	xStep := niceStep(maxRate / 6)
	xMax := math.Ceil(maxRate/xStep) * xStep
	yLo, yHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yHi == yLo {
		yHi++
	}
	x0, x1, y0, y1 := left, width-right, height-bottom, top // y0 is the bottom
	px := func(rate float64) int { return x0 + int(math.Round(rate/xMax*float64(x1-x0))) }
	py := func(ms float64) int {
		return y0 - int(math.Round((math.Log10(ms)-yLo)/(yHi-yLo)*float64(y0-y1)))
	}

	// Grid: minor lines at 2 and 5 of each decade, major at each decade.
	for d := yLo; d < yHi; d++ {
		for _, m := range []float64{2, 5} {
			y := py(m * math.Pow(10, d))
			hline(img, x0, x1, y, minor)
			text(img, x0-10-textWidth(num(m*math.Pow(10, d))), y-7, num(m*math.Pow(10, d)), color.RGBA{150, 150, 150, 255})
		}
	}
	for d := yLo; d <= yHi; d++ {
		y := py(math.Pow(10, d))
		hline(img, x0, x1, y, grid)
		label := num(math.Pow(10, d))
		text(img, x0-10-textWidth(label), y-7, label, black)
	}
	for r := 0.0; r <= xMax+xStep/2; r += xStep {
		x := px(r)
		vline(img, x, y1, y0, grid)
		label := num(r)
		text(img, x-textWidth(label)/2, y0+12, label, black)
	}
	// Frame.
	hline(img, x0, x1, y0, black)
	hline(img, x0, x1, y1, black)
	vline(img, x0, y1, y0, black)
	vline(img, x1, y1, y0, black)

	title := "jwtauthz check latency against offered rate (open loop, ghz)"
	text(img, (width-textWidth(title))/2, 10, title, black)
	sub := "server and ghz each pinned to one core"
	text(img, (width-textWidth(sub))/2, 32, sub, color.RGBA{110, 110, 110, 255})
	text(img, x0, y1-24, "latency, ms (log scale)", black)
	xl := "offered rate, checks/s"
	text(img, x0+(x1-x0-textWidth(xl))/2, y0+44, xl, black)

	// Series: p50 solid, p99 dashed, a square at each measured point.
	for _, s := range ss {
		for i, p := range s.points {
			if i > 0 {
				q := s.points[i-1]
				line(img, px(q.rate), py(q.p50), px(p.rate), py(p.p50), s.color, false)
				line(img, px(q.rate), py(q.p99), px(p.rate), py(p.p99), s.color, true)
			}
			marker(img, px(p.rate), py(p.p50), s.color, p.saturated)
			marker(img, px(p.rate), py(p.p99), s.color, p.saturated)
		}
	}

	// Legend.
	lx, ly := x1+24, y1+10
	for _, s := range ss {
		text(img, lx, ly, s.label, s.color)
		ly += 24
		for _, k := range []struct {
			name   string
			dashed bool
		}{{"p50", false}, {"p99", true}} {
			line(img, lx+8, ly+7, lx+58, ly+7, s.color, k.dashed)
			marker(img, lx+33, ly+7, s.color, false)
			text(img, lx+70, ly, k.name, black)
			ly += 22
		}
		ly += 16
	}
	marker(img, lx+33, ly+7, black, true)
	text(img, lx+70, ly, "saturated:", black)
	text(img, lx+70, ly+20, "achieved under", black)
	text(img, lx+70, ly+40, "95 % of offered", black)
	return img
}

// marker is a filled square at a measured point, hollow when the run was
// saturated.
func marker(img *image.RGBA, x, y int, c color.RGBA, hollow bool) {
	square(img, x, y, 5, c)
	if hollow {
		square(img, x, y, 3, white)
	}
}

// niceStep rounds x up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func num(x float64) string {
	return strconv.FormatFloat(x, 'f', -1, 64)
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	fill(img, image.Rect(x0, y, x1+1, y+1), c)
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	fill(img, image.Rect(x, min(y0, y1), x+1, max(y0, y1)+1), c)
}

func square(img *image.RGBA, x, y, r int, c color.RGBA) {
	fill(img, image.Rect(x-r, y-r, x+r+1, y+r+1), c)
}

// line draws a 3-pixel-wide line; dashed lines alternate 10 pixels drawn
// and 7 skipped along their length.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	dx, dy := float64(x1-x0), float64(y1-y0)
	n := int(math.Ceil(math.Max(math.Abs(dx), math.Abs(dy))))
	length := math.Hypot(dx, dy)
	for i := 0; i <= n; i++ {
		t := 0.0
		if n > 0 {
			t = float64(i) / float64(n)
		}
		if dashed && math.Mod(t*length, 17) >= 10 {
			continue
		}
		x, y := x0+int(math.Round(t*dx)), y0+int(math.Round(t*dy))
		fill(img, image.Rect(x-1, y-1, x+2, y+2), c)
	}
}

func textWidth(s string) int { return len(s) * 6 * scale }

// text draws s with the 5×7 font, its top-left corner at (x, y).
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToLower(s) {
		g, ok := font[r]
		if !ok {
			g = font['?']
		}
		for row, bits := range g {
			for col, b := range bits {
				if b == '#' {
					fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
				}
			}
		}
		x += 6 * scale
	}
}

// font is a 5×7 bitmap font, with two more rows for descenders: lowercase
// letters, digits and the punctuation the chart's labels use.
var font = map[rune][]string{
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
	'?': {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'a': {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
	'b': {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."},
	'c': {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
	'd': {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"},
	'e': {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
	'f': {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
	'g': {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
	'h': {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'i': {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
	'j': {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'k': {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
	'l': {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'm': {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"},
	'n': {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'o': {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
	'p': {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."},
	'q': {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"},
	'r': {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
	's': {".....", ".....", ".###.", "#....", ".###.", "....#", "####."},
	't': {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
	'u': {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
	'v': {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'w': {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
	'x': {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
	'y': {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
	'z': {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'/': {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'%': {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
	'=': {".....", ".....", "#####", ".....", "#####", ".....", "....."},
}
