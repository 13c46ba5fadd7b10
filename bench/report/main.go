// Command report turns one bench/run.sh run into results.csv and a markdown
// report: per scenario rps, latency percentiles, the server's CPU seconds,
// Checks per server CPU-second and the ratios to the floor; the Go
// benchmarks; and the performance targets, each computed from the run's figures.
//
//	report --out bench/out --image latency.png > bench/out/results.md
//
// It reads what run.sh leaves in --out: machine.txt, scenarios.tsv (one row
// per ghz run), ghz/NAME.json, gobench.txt, benchstat.txt and loadavg-*.txt.
// It writes --out/results.csv and prints the markdown.
package main

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// row is one scenario: a ghz run and what the server did meanwhile.
type row struct {
	name, target, mode string
	concurrency        int
	rate               int // offered requests/s; 0 in closed loop

	count, errors int     // ghz: responses, non-OK gRPC statuses
	seconds       float64 // ghz: wall time of the run
	rps           float64 // ghz: count / seconds
	p50, p90, p99 float64 // ghz, milliseconds, OK responses only

	serverCPU      float64 // seconds, utime+stime from /proc/PID/stat
	coreBusy       float64 // seconds the server's core was busy (any process, softirq)
	coreTotal      float64 // seconds of the server's core's clock
	loadBusy       float64 // seconds ghz's core was busy (ghz, softirq, any other process)
	loadTotal      float64 // seconds of ghz's core's clock
	load1          string
	allow, deny    int // from /metrics; -1 for the floor
	usersCreated   int
	cacheHit, miss int
	rssKB, hwmKB   int
	heapInuse      float64

	// derived
	checksPerCPU float64
	cpuPerCheck  float64 // µs
	floorRatio   float64 // Checks/CPU-s over the floor's at the same concurrency (closed) or rate (open); NaN if none
	p99Ratio     float64 // open loop: p99 over the floor's at the same rate
}

type ghzReport struct {
	Count     int            `json:"count"`
	Total     int64          `json:"total"` // ns
	Rps       float64        `json:"rps"`
	ErrorDist map[string]int `json:"errorDistribution"`
	Latency   []struct {
		Percentage int   `json:"percentage"`
		Latency    int64 `json:"latency"` // ns
	} `json:"latencyDistribution"`
}

func run() error {
	out := flag.String("out", "bench/out", "the run's output directory")
	image := flag.String("image", "latency.png", "the plot's path, as the markdown links it")
	level := flag.Int("heading-level", 2, "markdown level of the section headings")
	flag.Parse()

	machine, err := readKV(filepath.Join(*out, "machine.txt"))
	if err != nil {
		return err
	}
	rows, err := readRows(*out)
	if err != nil {
		return err
	}
	derive(rows)
	if err := writeCSV(filepath.Join(*out, "results.csv"), rows); err != nil {
		return err
	}
	bench, err := readBench(filepath.Join(*out, "gobench.txt"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	benchstat, _ := os.ReadFile(filepath.Join(*out, "benchstat.txt"))

	w := bufio.NewWriter(os.Stdout)
	r := &reporter{w: w, h: strings.Repeat("#", *level), out: *out, machine: machine, rows: rows, bench: bench}
	r.run()
	r.targets()
	r.closed()
	r.open()
	r.newUsers()
	r.memory()
	r.goBench(string(benchstat))
	fmt.Fprintf(w, "\n%s Latency against offered rate\n\n![p50 and p99 latency against offered rate: floor, cached, uncached ES256](%s)\n", r.h, *image)
	return w.Flush()
}

func readKV(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for l := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimRight(l, "\n"), "\t")
		m[k] = v
	}
	return m, nil
}

func readRows(out string) ([]*row, error) {
	f, err := os.Open(filepath.Join(out, "scenarios.tsv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comma = '\t'
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("scenarios.tsv: %w", err)
	}
	if len(recs) < 2 {
		return nil, errors.New("scenarios.tsv: no scenarios")
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var rows []*row
	for _, rec := range recs[1:] {
		s := func(k string) string { return rec[col[k]] }
		i := func(k string) int {
			n, err := strconv.Atoi(s(k))
			if err != nil {
				return -1
			}
			return n
		}
		fl := func(k string) float64 {
			x, err := strconv.ParseFloat(s(k), 64)
			if err != nil {
				return math.NaN()
			}
			return x
		}
		r := &row{
			name: s("name"), target: s("target"), mode: s("mode"),
			concurrency: i("concurrency"), rate: i("rate"),
			serverCPU: fl("server_cpu_s"), coreBusy: fl("core_busy_s"), coreTotal: fl("core_total_s"),
			loadBusy: fl("load_core_busy_s"), loadTotal: fl("load_core_total_s"),
			load1: s("load1"), allow: i("allow"), deny: i("deny"), usersCreated: i("users_created"),
			cacheHit: i("cache_hit"), miss: i("cache_miss"), rssKB: i("rss_kb"), hwmKB: i("hwm_kb"),
			heapInuse: fl("heap_inuse"),
		}
		g, err := readGhz(filepath.Join(out, s("ghz_json")))
		if err != nil {
			return nil, err
		}
		r.count = g.Count
		r.seconds = float64(g.Total) / 1e9
		r.rps = g.Rps
		for _, n := range g.ErrorDist {
			r.errors += n
		}
		r.p50, r.p90, r.p99 = math.NaN(), math.NaN(), math.NaN()
		for _, l := range g.Latency {
			ms := float64(l.Latency) / 1e6
			switch l.Percentage {
			case 50:
				r.p50 = ms
			case 90:
				r.p90 = ms
			case 99:
				r.p99 = ms
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// readGhz reads a ghz JSON report, or its gzipped copy (PATH.gz), which
// run.sh leaves once the report is written.
func readGhz(path string) (*ghzReport, error) {
	var in io.Reader
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(path + ".gz")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s.gz: %w", path, err)
		}
		in = zr
	} else if err != nil {
		return nil, err
	} else {
		defer f.Close()
		in = f
	}
	var g ghzReport
	if err := json.NewDecoder(in).Decode(&g); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &g, nil
}

func derive(rows []*row) {
	floor := func(mode string, conc, rate int) *row {
		for _, r := range rows {
			if r.target == "floor" && r.mode == mode && r.concurrency == conc && r.rate == rate {
				return r
			}
		}
		return nil
	}
	for _, r := range rows {
		r.checksPerCPU = float64(r.count) / r.serverCPU
		r.cpuPerCheck = r.serverCPU / float64(r.count) * 1e6
		r.floorRatio, r.p99Ratio = math.NaN(), math.NaN()
		if f := floor(r.mode, r.concurrency, r.rate); f != nil && (r.mode == "closed" || r.mode == "open") {
			r.floorRatio = r.checksPerCPU / f.checksPerCPU
			if r.mode == "open" {
				r.p99Ratio = r.p99 / f.p99
			}
		}
	}
}

func writeCSV(path string, rows []*row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"name", "target", "mode", "concurrency", "offered_rps", "count", "errors", "denied",
		"rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_s", "checks_per_cpu_s", "cpu_us_per_check",
		"floor_ratio", "p99_floor_ratio", "users_created", "cache_hit", "cache_miss", "rss_kb",
		"server_busy_pct", "load_core_busy_pct", "load_core_us_per_check", "core_busy_not_server_pct", "load1"})
	for _, r := range rows {
		w.Write([]string{r.name, r.target, r.mode, itoa(r.concurrency), itoa(r.rate), itoa(r.count),
			itoa(r.errors), itoa(r.deny), ff(r.rps, 1), ff(r.p50, 4), ff(r.p90, 4), ff(r.p99, 4),
			ff(r.serverCPU, 2), ff(r.checksPerCPU, 0), ff(r.cpuPerCheck, 2), ff(r.floorRatio, 3),
			ff(r.p99Ratio, 3), itoa(r.usersCreated), itoa(r.cacheHit), itoa(r.miss), itoa(r.rssKB),
			ff(r.serverBusy(), 1), ff(r.loadCoreBusy(), 1), ff(r.loadPerCheck(), 1), ff(r.foreign(), 1), r.load1})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return f.Close()
}

// foreign is the share of the server's core, in percent of wall time, that
// was busy but not charged to the server: other processes, and kernel work
// (softirq) done on that core.
func (r *row) foreign() float64 {
	if r.coreTotal <= 0 {
		return math.NaN()
	}
	return max(0, r.coreBusy-r.serverCPU) / r.coreTotal * 100
}

// serverBusy is the server's CPU time in percent of the run's wall time:
// near 100 the server's one core is the limit.
func (r *row) serverBusy() float64 { return r.serverCPU / r.seconds * 100 }

// loadCoreBusy is how busy ghz's core was, in percent: near 100 the load
// tool is the limit.
func (r *row) loadCoreBusy() float64 {
	if r.loadTotal <= 0 {
		return math.NaN()
	}
	return r.loadBusy / r.loadTotal * 100
}

// loadPerCheck is the load tool's core time per Check, in µs: what ghz
// spends to send one and read its answer.
func (r *row) loadPerCheck() float64 {
	if r.count == 0 {
		return math.NaN()
	}
	return r.loadBusy / float64(r.count) * 1e6
}

func us(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

func itoa(n int) string {
	if n < 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func ff(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return ""
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// ms formats a latency in milliseconds with three significant digits.
func ms(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case x < 1:
		return strconv.FormatFloat(x, 'f', 3, 64)
	case x < 10:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case x < 100:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

func ratio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + "×"
}

// thousands writes n with thin separators: 12,345.
func thousands(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

type benchResult struct {
	name                    string
	nsPerOp, bPerOp, allocs []float64
}

// readBench reads `go test -bench` output; runs of one benchmark are
// gathered under its name.
func readBench(path string) ([]*benchResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var res []*benchResult
	byName := map[string]*benchResult{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		b := byName[fields[0]]
		if b == nil {
			b = &benchResult{name: fields[0]}
			byName[fields[0]] = b
			res = append(res, b)
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "ns/op":
				b.nsPerOp = append(b.nsPerOp, v)
			case "B/op":
				b.bPerOp = append(b.bPerOp, v)
			case "allocs/op":
				b.allocs = append(b.allocs, v)
			}
		}
	}
	return res, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type reporter struct {
	w       io.Writer
	h       string
	out     string
	machine map[string]string
	rows    []*row
	bench   []*benchResult
}

func (r *reporter) printf(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

func (r *reporter) find(target, mode string, conc, rate int) *row {
	for _, x := range r.rows {
		if x.target == target && x.mode == mode && x.concurrency == conc && x.rate == rate {
			return x
		}
	}
	return nil
}

func (r *reporter) where(f func(*row) bool) []*row {
	var out []*row
	for _, x := range r.rows {
		if f(x) {
			out = append(out, x)
		}
	}
	return out
}

func (r *reporter) loadavg(name string) string {
	b, err := os.ReadFile(filepath.Join(r.out, name))
	if err != nil {
		return "–"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "–"
	}
	return strings.Join(f[:3], " ")
}

func (r *reporter) run() {
	m := r.machine
	r.printf("%s The run\n\n", r.h)
	r.printf("| | |\n|---|---|\n")
	r.printf("| date (UTC) | started %s, first measurement %s |\n", m["date"], m["measuring"])
	r.printf("| jwtauthz | %s |\n", m["commit"])
	r.printf("| machine | %s CPUs (`nproc`), %s, %s RAM |\n", m["nproc"], m["cpu"], m["memory"])
	r.printf("| kernel | %s |\n", m["kernel"])
	r.printf("| Go | %s |\n", m["go"])
	r.printf("| load tool | ghz %s, pinned to core %s, `--cpus 1`, one HTTP/2 connection |\n", m["ghz"], m["load_cpu"])
	r.printf("| server | pinned to core %s (GOMAXPROCS 1 follows from the affinity) |\n", m["server_cpu"])
	r.printf("| bbolt files on | %s |\n", m["filesystem"])
	r.printf("| each closed/open-loop scenario | %s |\n", m["duration"])
	r.printf("| token pool | %s tokens, one user each, half RS512-4096 and half ES256 |\n", m["pool"])
	r.printf("| load average (1, 5, 15 min) | before %s; after the load scenarios %s; after the Go benchmarks %s |\n",
		r.loadavg("loadavg-before.txt"), r.loadavg("loadavg-after-load.txt"), r.loadavg("loadavg-after.txt"))
	var loads, foreign []float64
	for _, x := range r.rows {
		if l, err := strconv.ParseFloat(x.load1, 64); err == nil {
			loads = append(loads, l)
		}
		if f := x.foreign(); !math.IsNaN(f) {
			foreign = append(foreign, f)
		}
	}
	if len(loads) > 0 {
		r.printf("| 1-minute load average at each scenario's start | median %.2f, max %.2f (the run's own server and ghz count: up to 2, more as their threads queue on their one core each) |\n",
			median(loads), slices.Max(loads))
	}
	if len(foreign) > 0 {
		var disturbed []string
		for _, x := range r.rows {
			if x.foreign() >= 10 {
				disturbed = append(disturbed, x.name)
			}
		}
		r.printf("| server's core busy but not charged to the server (\"other %%\") | median %.1f %%, max %.1f %% of wall time; ≥ 10 %% in %d of %d scenarios%s |\n",
			median(foreign), slices.Max(foreign), len(disturbed), len(foreign), list(disturbed))
	}
	if b, err := os.ReadFile(filepath.Join(r.out, "quiet-wait.txt")); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			verdict := "quiet (1-minute load < 0.7 for 60 s)"
			if q, _ := strconv.Atoi(f[1]); q < 60 {
				verdict = "never quiet; ran anyway"
			}
			r.printf("| waited for a quiet machine | %s s, %s |\n", f[0], verdict)
		}
	}
	r.printf("\n")
}

func list(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

func (r *reporter) errs(x *row) string {
	s := strconv.Itoa(x.errors)
	if x.deny >= 0 {
		s += " / " + strconv.Itoa(x.deny)
	}
	return s
}

func (r *reporter) closed() {
	r.printf("%s Closed loop\n\n", r.h)
	r.printf("Each ghz worker sends its next Check as soon as the last one is answered. " +
		"Checks/CPU-s is completed Checks over the server's CPU seconds; × floor compares it with the floor at the same concurrency. " +
		"Errors: non-OK gRPC statuses / jwtauthz denials (from `/metrics`). " +
		"The warm-up rows are the first pass over each pool (first logins, cache fill). " +
		"Server %% is the server's CPU time over the run's wall time (100 %%: its core is the limit); " +
		"ghz core %% is how busy the load tool's core was (100 %%: the load tool is the limit), and ghz µs/Check that core's time per Check; " +
		"other %% is the share of the server's core that was busy but not charged to the server: other processes on the machine, which the run does not control (near 0 %% on a quiet machine).\n\n")
	r.printf("| scenario | concurrency | Checks | rps | p50 ms | p90 ms | p99 ms | server CPU s | server %% | other %% | ghz core %% | ghz µs/Check | CPU µs/Check | Checks/CPU-s | × floor | errors |\n")
	r.printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, x := range r.where(func(x *row) bool { return x.mode == "closed" || x.mode == "warm" }) {
		label := x.target
		if x.mode == "warm" {
			label += " (warm-up pass)"
		}
		r.printf("| %s | %d | %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %.1f | %s | %s | %s |\n",
			label, x.concurrency, thousands(float64(x.count)), thousands(x.rps), ms(x.p50), ms(x.p90), ms(x.p99),
			x.serverCPU, pct(x.serverBusy()), pct(x.foreign()), pct(x.loadCoreBusy()), us(x.loadPerCheck()), x.cpuPerCheck, thousands(x.checksPerCPU), ratio(x.floorRatio), r.errs(x))
	}
	r.printf("\n")
}

func (r *reporter) open() {
	rows := r.where(func(x *row) bool { return x.mode == "open" })
	if len(rows) == 0 {
		return
	}
	r.printf("%s Open loop\n\n", r.h)
	r.printf("ghz paces requests at the offered rate with %d workers; when all are busy, requests wait in ghz and the achieved rate falls short. "+
		"ghz times each request from when it is sent, not from when it was due, so past saturation the latencies understate what a client would see. "+
		"p99 × floor compares with the floor at the same offered rate.\n\n", rows[0].concurrency)
	r.printf("| scenario | offered rps | achieved rps | p50 ms | p90 ms | p99 ms | p99 × floor | server CPU s | server %% | other %% | ghz core %% | ghz µs/Check | CPU µs/Check | Checks/CPU-s | × floor | errors |\n")
	r.printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	slices.SortStableFunc(rows, func(a, b *row) int { return cmp.Compare(a.rate, b.rate) })
	for _, x := range rows {
		r.printf("| %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %.1f | %s | %s | %s |\n",
			x.target, thousands(float64(x.rate)), thousands(x.rps), ms(x.p50), ms(x.p90), ms(x.p99), ratio(x.p99Ratio),
			x.serverCPU, pct(x.serverBusy()), pct(x.foreign()), pct(x.loadCoreBusy()), us(x.loadPerCheck()), x.cpuPerCheck, thousands(x.checksPerCPU), ratio(x.floorRatio), r.errs(x))
	}
	r.printf("\n")
}

func (r *reporter) newUsers() {
	rows := r.where(func(x *row) bool { return x.mode == "newusers" })
	if len(rows) == 0 {
		return
	}
	r.printf("%s New users\n\n", r.h)
	r.printf("Every Check is the first login of a user the store has never seen (fresh store per run, ES256 tokens, cache on); " +
		"each is written durably (bbolt batch, fsync) before its allow. A run stops at the end of its pool or of its duration. " +
		"Users created is jwtauthz's own counter: it must equal the Checks.\n\n")
	r.printf("| concurrency | Checks | users created | first logins/s | p50 ms | p90 ms | p99 ms | server CPU s | server %% | other %% | ghz core %% | CPU µs/Check | errors |\n")
	r.printf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, x := range rows {
		r.printf("| %d | %s | %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %.1f | %s |\n",
			x.concurrency, thousands(float64(x.count)), thousands(float64(x.usersCreated)),
			thousands(float64(x.usersCreated)/x.seconds), ms(x.p50), ms(x.p90), ms(x.p99),
			x.serverCPU, pct(x.serverBusy()), pct(x.foreign()), pct(x.loadCoreBusy()), x.cpuPerCheck, r.errs(x))
	}
	r.printf("\n")
}

func (r *reporter) memory() {
	rows := r.where(func(x *row) bool { return x.mode == "memory" })
	if len(rows) == 0 {
		return
	}
	r.printf("%s Memory\n\n", r.h)
	r.printf("%s distinct ES256 tokens of as many users (ES256, not RS512, so minting them takes seconds, not minutes; "+
		"a cache entry does not depend on the algorithm). Pass 1 creates the users and fills the cache (`cache.max_entries: 100000`, "+
		"64 shards, so a full shard evicts before the whole cache holds 100,000); pass 2 sends the same tokens again. "+
		"RSS is VmRSS from `/proc/PID/status` after each pass; peak is VmHWM.\n\n", thousands(float64(rows[0].count)))
	r.printf("| pass | Checks | rps | users created | cache hits | cache misses | RSS MB | peak RSS MB | Go heap in use MB | errors |\n")
	r.printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, x := range rows {
		r.printf("| %s | %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %s |\n",
			strings.TrimPrefix(x.name, "memory-"), thousands(float64(x.count)), thousands(x.rps),
			thousands(float64(x.usersCreated)), thousands(float64(x.cacheHit)), thousands(float64(x.miss)),
			float64(x.rssKB)*1024/1e6, float64(x.hwmKB)*1024/1e6, x.heapInuse/1e6, r.errs(x))
	}
	r.printf("\nMB are 10⁶ bytes.\n\n")
}

func (r *reporter) benchMedian(name string) float64 {
	for _, b := range r.bench {
		if b.name == name || strings.HasPrefix(b.name, name+"-") {
			return median(b.nsPerOp)
		}
	}
	return math.NaN()
}

func (r *reporter) goBench(benchstat string) {
	if len(r.bench) == 0 {
		return
	}
	r.printf("%s Go benchmarks\n\n", r.h)
	r.printf("`go test -run '^$' -bench . -benchmem -count %s ./authz/` and `-bench Match100 ./authz/route/`, each test binary pinned to core %s with `taskset`; "+
		"GOMAXPROCS is left at its default, which follows the affinity: 1 (so the names carry no `-N` suffix). "+
		"Check benchmarks go over bufconn (no TCP). Medians of the runs:\n\n", r.machine["go_count"], r.machine["server_cpu"])
	r.printf("| benchmark | µs/op | B/op | allocs/op |\n|---|--:|--:|--:|\n")
	for _, b := range r.bench {
		r.printf("| %s | %.1f | %s | %s |\n", b.name, median(b.nsPerOp)/1e3, thousands(median(b.bPerOp)), thousands(median(b.allocs)))
	}
	if benchstat != "" {
		r.printf("\nbenchstat:\n\n```\n%s```\n", benchstat)
	}
	r.printf("\n")
}

type verdict struct {
	target, figure, verdict string
}

func met(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func (r *reporter) targets() {
	var vs []verdict
	concs := func(target string) []*row {
		return r.where(func(x *row) bool { return x.target == target && x.mode == "closed" })
	}

	// Cached Checks/CPU-s >= 85 % of the floor's at concurrency 16 and 64
	// (1 shown too: one Check in flight, no batching on either side).
	{
		var parts []string
		all, n := true, 0
		for _, x := range concs("cached") {
			if math.IsNaN(x.floorRatio) {
				continue
			}
			judged := x.concurrency == 16 || x.concurrency == 64
			if judged {
				n++
				all = all && x.floorRatio >= 0.85
			}
			part := fmt.Sprintf("c=%d: %s vs %s Checks/CPU-s = %.0f %%", x.concurrency,
				thousands(x.checksPerCPU), thousands(r.find("floor", "closed", x.concurrency, 0).checksPerCPU), x.floorRatio*100)
			if !judged {
				part += " (not judged)"
			}
			parts = append(parts, part)
		}
		v := "not measured"
		if n > 0 {
			v = met(all)
		}
		vs = append(vs, verdict{"Cached Check: ≥ 85 % of the floor's Checks per server CPU-second (closed loop, concurrency 16 and 64)", strings.Join(parts, "; "), v})
	}

	// The same, at equal load: closed-loop runs at the same concurrency
	// may run at different rates when the load tool is the limit.
	{
		var parts []string
		all, n := true, 0
		for _, x := range r.where(func(x *row) bool { return x.target == "cached" && x.mode == "open" }) {
			f := r.find("floor", "open", x.concurrency, x.rate)
			if f == nil || x.rps < 0.95*float64(x.rate) || f.rps < 0.95*float64(f.rate) {
				continue
			}
			n++
			all = all && x.floorRatio >= 0.85
			parts = append(parts, fmt.Sprintf("%s rps: %s vs %s Checks/CPU-s = %.0f %%", thousands(float64(x.rate)),
				thousands(x.checksPerCPU), thousands(f.checksPerCPU), x.floorRatio*100))
		}
		v := "not measured"
		if n > 0 {
			v = met(all) + " (supplementary reading)"
		}
		vs = append(vs, verdict{"… the same at equal load: open loop, at the offered rates both runs achieved (≥ 95 %)", strings.Join(parts, "; "), v})
	}

	// And by the Go benchmarks alone.
	if c, f := r.benchMedian("BenchmarkCheckCached"), r.benchMedian("BenchmarkCheckFloor"); !math.IsNaN(c) && !math.IsNaN(f) {
		vs = append(vs, verdict{"… the same by the Go benchmarks alone: BenchmarkCheckFloor's time over BenchmarkCheckCached's",
			fmt.Sprintf("%.1f µs vs %.1f µs = %.0f %%", f/1e3, c/1e3, f/c*100), met(f/c >= 0.85) + " (supplementary reading)"})
	}

	// Uncached CPU/Check <= 1.1 x (floor CPU/Check + jwt.Parse): by the
	// load run for the two providers it serves, by the Go benchmarks for
	// every algorithm.
	for _, k := range []struct{ target, bench string }{
		{"uncached-rs512", "BenchmarkJWTParse/RS512-4096"},
		{"uncached-es256", "BenchmarkJWTParse/ES256"},
	} {
		parse := r.benchMedian(k.bench) / 1e3
		var parts []string
		all, n := true, 0
		for _, x := range concs(k.target) {
			f := r.find("floor", "closed", x.concurrency, 0)
			if f == nil || math.IsNaN(parse) {
				continue
			}
			n++
			bound := 1.1 * (f.cpuPerCheck + parse)
			all = all && x.cpuPerCheck <= bound
			parts = append(parts, fmt.Sprintf("c=%d: %.1f µs vs bound 1.1 × (%.1f + %.1f) = %.1f µs (%.2f× the sum)",
				x.concurrency, x.cpuPerCheck, f.cpuPerCheck, parse, bound, x.cpuPerCheck/(f.cpuPerCheck+parse)))
		}
		v := "not measured"
		if n > 0 {
			v = met(all)
		}
		vs = append(vs, verdict{fmt.Sprintf("Uncached %s: server CPU per Check ≤ 1.1 × (floor's CPU per Check + %s)",
			strings.ToUpper(strings.TrimPrefix(k.target, "uncached-")), k.bench), strings.Join(parts, "; "), v})
	}
	for _, name := range []string{"RS512-4096", "ES256", "RS256-2048", "EdDSA"} {
		// Go benchmarks alone: bufconn, client and server in one process,
		// so both sides include the client's cost.
		unc, fl, parse := r.benchMedian("BenchmarkCheckUncached/"+name)/1e3, r.benchMedian("BenchmarkCheckFloor")/1e3, r.benchMedian("BenchmarkJWTParse/"+name)/1e3
		if !math.IsNaN(unc) && !math.IsNaN(fl) && !math.IsNaN(parse) {
			vs = append(vs, verdict{"Uncached " + name + " by the Go benchmarks: BenchmarkCheckUncached/" + name + " ≤ 1.1 × (BenchmarkCheckFloor + BenchmarkJWTParse/" + name + ")",
				fmt.Sprintf("%.1f µs vs bound 1.1 × (%.1f + %.1f) = %.1f µs (%.2f× the sum)", unc, fl, parse, 1.1*(fl+parse), unc/(fl+parse)),
				met(unc <= 1.1*(fl+parse))})
		}
	}

	// New users: p50 at concurrency 1 <= 3 ms, >= 2000/s at 16.
	{
		var parts []string
		p50ok, rateok, seen1, seen16 := true, true, false, false
		valid := true
		for _, x := range r.where(func(x *row) bool { return x.mode == "newusers" }) {
			rate := float64(x.usersCreated) / x.seconds
			parts = append(parts, fmt.Sprintf("c=%d: %s/s, p50 %s ms", x.concurrency, thousands(rate), ms(x.p50)))
			switch x.concurrency {
			case 1:
				seen1, p50ok = true, x.p50 <= 3
			case 16:
				seen16, rateok = true, rate >= 2000
			}
			valid = valid && x.usersCreated == x.count && x.errors == 0 && x.deny == 0
		}
		v := "not measured"
		if seen1 || seen16 {
			v = fmt.Sprintf("p50 at c=1 %s; rate at c=16 %s", met(p50ok && seen1), met(rateok && seen16))
			if !valid {
				v += " (but not every Check created a user: see the new-users table)"
			}
		}
		vs = append(vs, verdict{"New users, each durable before its allow: p50 ≤ 3 ms at concurrency 1, ≥ 2,000 first logins per second at 16", strings.Join(parts, "; "), v})
	}

	// RSS <= 150 MB.
	{
		mem := r.where(func(x *row) bool { return x.mode == "memory" })
		fig, v := "", "not measured"
		if len(mem) > 0 {
			rss, hwm := 0, 0
			for _, x := range mem {
				rss, hwm = max(rss, x.rssKB), max(hwm, x.hwmKB)
			}
			mb := float64(rss) * 1024 / 1e6
			fig = fmt.Sprintf("RSS %.1f MB after %s tokens and users (peak %.1f MB)", mb, thousands(float64(mem[0].count)), float64(hwm)*1024/1e6)
			v = met(mb <= 150)
			if mem[0].count < 100000 {
				v = "not measured at size (" + v + " with fewer than 100,000)"
			}
		}
		vs = append(vs, verdict{"Memory: ≤ 150 MB RSS with 100,000 cached tokens and 100,000 known users (GOMEMLIMIT unset)", fig, v})
	}

	// Routes: 100 routes cost a cached Check at most 5 %.
	if r0, r100 := r.benchMedian("BenchmarkCheckRoutes/routes=0"), r.benchMedian("BenchmarkCheckRoutes/routes=100"); !math.IsNaN(r0) && !math.IsNaN(r100) {
		fig := fmt.Sprintf("%.1f µs vs %.1f µs = %+.1f %%", r100/1e3, r0/1e3, (r100/r0-1)*100)
		if m := r.benchMedian("BenchmarkMatch100"); !math.IsNaN(m) {
			fig += fmt.Sprintf("; BenchmarkMatch100 (route.Table.Match over 100 routes) %.2f µs", m/1e3)
		}
		vs = append(vs, verdict{"Routes: BenchmarkCheckRoutes with 100 routes within 5 % of none", fig, met(r100 <= 1.05*r0)})
	}
	if off, on := r.benchMedian("BenchmarkCheckTracing/tracing=false"), r.benchMedian("BenchmarkCheckTracing/tracing=true"); !math.IsNaN(off) && !math.IsNaN(on) {
		vs = append(vs, verdict{"Tracing: BenchmarkCheckTracing on against off (no target)",
			fmt.Sprintf("%.1f µs vs %.1f µs = %+.1f %%", on/1e3, off/1e3, (on/off-1)*100), "–"})
	}

	r.printf("%s Targets\n\n", r.h)
	r.printf("| target | measured in this run | verdict |\n|---|---|---|\n")
	for _, v := range vs {
		r.printf("| %s | %s | %s |\n", v.target, v.figure, v.verdict)
	}
	var bad []string
	for _, x := range r.rows {
		if x.errors > 0 || x.deny > 0 {
			bad = append(bad, fmt.Sprintf("%s (%d errors, %d denials)", x.name, x.errors, max(0, x.deny)))
		}
	}
	if len(bad) > 0 {
		r.printf("\nScenarios with errors or denials (their figures are suspect): %s.\n", strings.Join(bad, ", "))
	} else {
		r.printf("\nEvery Check of every scenario was answered OK and allowed.\n")
	}
	r.printf("\n")
}
