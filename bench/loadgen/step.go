package main

// One load step: N calls, N gRPC (or shim WebSocket) clients, a warm-up, a measurement window, and
// the checks and figures of both directions.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type stepConfig struct {
	Label          string  `json:"label"`
	GRPC           string  `json:"grpc"`
	Streams        int     `json:"streams"`
	ChunkMs        int     `json:"chunk_ms"`
	Transport      string  `json:"transport"`               // rtp, audiosocket, websocket
	Client         string  `json:"client"`                  // grpc (StreamMedia) or shim (WebSocket media_stream)
	WS             string  `json:"websocket"`               // shim: the gateway's WebSocket host:port
	Encapsulation  string  `json:"encapsulation,omitempty"` // shim: sln or rtp
	WarmupS        float64 `json:"warmup_s"`
	MeasureS       float64 `json:"measure_s"`
	RampPerS       float64 `json:"ramp_per_s"`
	StreamsPerConn int     `json:"streams_per_conn"`
	GatewayPID     int     `json:"gateway_pid"`
	DrainS         float64 `json:"drain_s"`
}

type call struct {
	st  *step
	idx uint32
	id  string

	// call -> client
	downSent, downSentWin atomic.Int64
	downRecv, downBad     atomic.Int64
	downNext              uint32 // owned by the client's receive loop
	// client -> call
	upSent, upSentWin atomic.Int64
	upRecv, upBad     atomic.Int64
	upNext            uint32 // owned by the leg's receive loop
	upFloor           int64  // least uplink latency in the window (owned by the same loop)
	upFloorSet        bool   // upFloor holds a frame's latency (which may be below 0: see gotUp)

	started    atomic.Bool
	mediaOn    atomic.Bool
	stopReason string
	err        error
	ended      chan struct{}
}

type step struct {
	cfg       stepConfig
	base      time.Time
	calls     []*call
	callsByID map[string]*call
	winStart  atomic.Int64
	winEnd    atomic.Int64
	stopDown  chan struct{}
	stopUp    chan struct{}
	down, up  *hist
	fpc       uint32 // frames per chunk
}

func (s *step) now() int64 { return int64(time.Since(s.base)) }

func (s *step) inWindow(t int64) bool { return t >= s.winStart.Load() && t < s.winEnd.Load() }

// --- the call side -------------------------------------------------------------------

// startMedia begins the call's audio on an externalMedia channel that joined
// its snoop's bridge, and checks what the gateway plays into the call.
func (c *call) startMedia(ext *channel) {
	if !c.mediaOn.CompareAndSwap(false, true) {
		return
	}
	leg := ext.leg
	go leg.run(func(frame []byte) { c.gotUp(frame) })
	go c.sendDown(leg, ext.stopMedia)
}

func (c *call) sendDown(leg mediaLeg, stop chan struct{}) {
	st := c.st
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	frame := make([]byte, frameBytes)
	stopping := false
	var seq uint32
	for {
		select {
		case <-stop:
			return
		case <-st.stopDown:
			stopping = true
		case <-t.C:
		}
		// Stop on a chunk boundary, so that every chunk the gateway cuts is whole.
		if stopping {
			if seq%st.fpc == 0 {
				return
			}
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
		now := st.now()
		encodeFrame(frame, record{dir: dirDown, stream: c.idx, seq: seq, sendNs: now})
		if err := leg.send(frame); err != nil {
			return
		}
		seq++
		c.downSent.Add(1)
		if st.inWindow(now) {
			c.downSentWin.Add(1)
		}
	}
}

func (c *call) gotUp(frame []byte) {
	st := c.st
	now := st.now()
	r, ok := decodeFrame(frame)
	if !ok || r.dir != dirUp || r.stream != c.idx || r.seq < c.upNext {
		c.upBad.Add(1)
		return
	}
	c.upNext = r.seq + 1
	c.upRecv.Add(1)
	if st.inWindow(r.sendNs) {
		// Frame k of a chunk cannot be played before k frame periods after it was sent.
		lat := now - r.sendNs - int64(r.k)*frameNs
		st.up.add(lat)
		// A pacer's timer may fire up to a millisecond before the frame is due,
		// so lat can be a little below 0: it still counts.
		if !c.upFloorSet || lat < c.upFloor {
			c.upFloor, c.upFloorSet = lat, true
		}
	}
}

// --- the client side -----------------------------------------------------------------

var transports = map[string]pb.MediaTransport{
	"rtp":         pb.MediaTransport_MEDIA_TRANSPORT_RTP,
	"audiosocket": pb.MediaTransport_MEDIA_TRANSPORT_AUDIOSOCKET,
	"websocket":   pb.MediaTransport_MEDIA_TRANSPORT_WEBSOCKET,
}

func (c *call) runClient(ctx context.Context, cc *grpc.ClientConn) {
	defer close(c.ended)
	st := c.st
	stream, err := pb.NewMediaStreamServiceClient(cc).StreamMedia(ctx)
	if err != nil {
		c.err = err
		return
	}
	err = stream.Send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Config{Config: &pb.StreamConfig{
		Target:    &pb.StreamConfig_CallId{CallId: c.id},
		Format:    pb.AudioFormat_AUDIO_FORMAT_ULAW,
		ChunkMs:   uint32(st.cfg.ChunkMs),
		Transport: transports[st.cfg.Transport],
	}}})
	if err != nil {
		c.err = err
		return
	}
	first, err := stream.Recv()
	if err != nil {
		c.err = err
		return
	}
	if first.GetStarted() == nil {
		c.err = fmt.Errorf("first message is not started: %v", first)
		return
	}
	c.started.Store(true)
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		c.sendUp(stream)
	}()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			c.err = err
			break
		}
		if a := resp.GetAudio(); a != nil {
			c.gotDown(a.Data)
		} else if s := resp.GetStopped(); s != nil {
			c.stopReason = s.Reason.String()
		}
	}
	<-sendDone
}

func (c *call) gotDown(data []byte) {
	st := c.st
	now := st.now()
	if len(data)%frameBytes != 0 || len(data) == 0 {
		c.downBad.Add(1)
		return
	}
	var last int64 = -1
	for off := 0; off < len(data); off += frameBytes {
		r, ok := decodeFrame(data[off : off+frameBytes])
		if !ok || r.dir != dirDown || r.stream != c.idx || r.seq < c.downNext {
			c.downBad.Add(1)
			continue
		}
		c.downNext = r.seq + 1
		c.downRecv.Add(1)
		last = r.sendNs
	}
	// A chunk can only leave once its last frame has arrived: the added latency
	// is from that frame's arrival at the gateway to the chunk's delivery.
	if last >= 0 && st.inWindow(last) {
		st.down.add(now - last)
	}
}

func (c *call) sendUp(stream pb.MediaStreamService_StreamMediaClient) {
	st := c.st
	period := time.Duration(st.cfg.ChunkMs) * time.Millisecond
	t := time.NewTicker(period)
	defer t.Stop()
	var seq uint32
	for {
		select {
		case <-st.stopUp:
			_ = stream.CloseSend()
			return
		case <-t.C:
		}
		now := st.now()
		data := make([]byte, int(st.fpc)*frameBytes)
		for k := uint32(0); k < st.fpc; k++ {
			encodeFrame(data[k*frameBytes:], record{dir: dirUp, stream: c.idx, seq: seq, k: byte(k), sendNs: now})
			seq++
		}
		if err := stream.Send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Audio{Audio: &pb.AudioChunk{Data: data}}}); err != nil {
			return
		}
		c.upSent.Add(int64(st.fpc))
		if st.inWindow(now) {
			c.upSentWin.Add(int64(st.fpc))
		}
	}
}

// --- histograms ----------------------------------------------------------------------

const (
	histRes     = int64(10 * time.Microsecond)
	histBuckets = 100_000 // 10 us buckets up to 1 s
)

type hist struct {
	b     []atomic.Uint64
	over  atomic.Uint64
	max   atomic.Int64
	count atomic.Uint64
}

func newHist() *hist { return &hist{b: make([]atomic.Uint64, histBuckets)} }

func (h *hist) add(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.count.Add(1)
	if i := ns / histRes; i < histBuckets {
		h.b[i].Add(1)
	} else {
		h.over.Add(1)
	}
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
}

// quantile in ms (upper edge of the bucket); the maximum past the range; -1 if empty.
func (h *hist) quantile(q float64) float64 {
	n := h.count.Load()
	if n == 0 {
		return -1
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= want {
			return float64(int64(i+1)*histRes) / 1e6
		}
	}
	return float64(h.max.Load()) / 1e6
}

type latency struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func (h *hist) summary() latency {
	return latency{h.count.Load(), h.quantile(0.50), h.quantile(0.99), float64(h.max.Load()) / 1e6}
}

// --- /proc ---------------------------------------------------------------------------

var clkTck = 100.0 // sysconf(_SC_CLK_TCK) is 100 on Linux

// tree is a process and its descendants (a gateway with --workers is a
// supervisor and its worker processes).
func tree(pid string) []string {
	out := []string{pid}
	b, err := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
	if err != nil {
		return out
	}
	for _, child := range strings.Fields(string(b)) {
		out = append(out, tree(child)...)
	}
	return out
}

// cpuSeconds is utime+stime of a process tree (all threads of every process).
func cpuSeconds(pid string) (float64, error) {
	var total float64
	for i, p := range tree(pid) {
		s, err := processCPU(p)
		if err != nil && i == 0 {
			return 0, err
		}
		total += s
	}
	return total, nil
}

// rssKB is the resident memory of a process tree.
func rssKB(pid string) (int64, error) {
	var total int64
	for i, p := range tree(pid) {
		kb, err := processRSS(p)
		if err != nil && i == 0 {
			return 0, err
		}
		total += kb
	}
	return total, nil
}

func processCPU(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck, nil
}

func processRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// machineBusy returns busy and total jiffies of all CPUs.
func machineBusy() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	for i, v := range f {
		x, _ := strconv.ParseFloat(v, 64)
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy, total
}

// --- the step ------------------------------------------------------------------------

type direction struct {
	// Uplink only: each stream's least added latency in the window. The pacer
	// keeps its schedule while frames are queued, so a delay a stream met once
	// (e.g. at set-up) stays in all its later frames: this is that floor.
	Floor   *latency `json:"per_stream_floor,omitempty"`
	Sent    int64    `json:"sent"`
	Recv    int64    `json:"received"`
	Lost    int64    `json:"lost"`
	Bad     int64    `json:"bad"`
	SentWin int64    `json:"sent_in_window"`
	Latency latency  `json:"added_latency"`
}

type stepResult struct {
	Config         stepConfig     `json:"config"`
	Started        int            `json:"started"`
	Failed         int            `json:"failed"`
	Errors         map[string]int `json:"errors,omitempty"`
	StopReasons    map[string]int `json:"stop_reasons"`
	SetupS         float64        `json:"setup_s"`
	WindowS        float64        `json:"window_s"`
	Down           direction      `json:"down"`
	Up             direction      `json:"up"`
	GatewayCPUS    float64        `json:"gateway_cpu_s"`
	GatewayRSSIdle int64          `json:"gateway_rss_idle_kb"`
	GatewayRSS     int64          `json:"gateway_rss_kb"`
	LoadgenCPUS    float64        `json:"loadgen_cpu_s"`
	MachineBusy    float64        `json:"machine_busy_fraction"`
	LeftChannels   int            `json:"left_channels"`
	LeftBridges    int            `json:"left_bridges"`
	EventsDropped  int64          `json:"events_dropped"`
}

func (a *asterisk) serveStep(w http.ResponseWriter, r *http.Request) {
	var cfg stepConfig
	if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil || cfg.Streams < 1 {
		http.Error(w, "bad step config", 400)
		return
	}
	switch cfg.Client {
	case "", "grpc":
		cfg.Client = "grpc"
		if cfg.GRPC == "" {
			http.Error(w, "bad step config: no grpc address", 400)
			return
		}
	case "shim":
		// The shim cuts 20 ms chunks only.
		if cfg.WS == "" || !shimEncapsulations[cfg.Encapsulation] || cfg.ChunkMs != 20 {
			http.Error(w, "bad shim step: needs websocket, encapsulation sln or rtp, chunk_ms 20", 400)
			return
		}
	default:
		http.Error(w, "bad client: grpc or shim", 400)
		return
	}
	if _, ok := transports[cfg.Transport]; !ok || cfg.ChunkMs%20 != 0 || cfg.ChunkMs < 20 || cfg.ChunkMs > 200 {
		http.Error(w, "bad transport or chunk_ms", 400)
		return
	}
	if cfg.RampPerS <= 0 {
		cfg.RampPerS = 200
	}
	if cfg.StreamsPerConn <= 0 {
		cfg.StreamsPerConn = 50
	}
	if cfg.DrainS <= 0 {
		cfg.DrainS = 2
	}
	a.stepMu.Lock()
	defer a.stepMu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	progress := func(v map[string]any) {
		_ = enc.Encode(v)
		if flusher != nil {
			flusher.Flush()
		}
	}
	res := a.runStep(cfg, progress)
	progress(map[string]any{"event": "result", "result": res})
}

func (a *asterisk) runStep(cfg stepConfig, progress func(map[string]any)) stepResult {
	st := &step{
		cfg: cfg, base: time.Now(), callsByID: map[string]*call{},
		stopDown: make(chan struct{}), stopUp: make(chan struct{}),
		down: newHist(), up: newHist(), fpc: uint32(cfg.ChunkMs / 20),
	}
	st.winStart.Store(math.MaxInt64)
	st.winEnd.Store(math.MaxInt64)
	stamp := time.Now().UnixNano() % 1_000_000_000
	for i := 0; i < cfg.Streams; i++ {
		c := &call{st: st, idx: uint32(i), id: callUUID(stamp, i), ended: make(chan struct{})}
		st.calls = append(st.calls, c)
		st.callsByID[c.id] = c
	}
	a.addCalls(st)
	pid := strconv.Itoa(cfg.GatewayPID)
	res := stepResult{Config: cfg, Errors: map[string]int{}, StopReasons: map[string]int{}}
	res.GatewayRSSIdle, _ = rssKB(pid)

	ctx, cancel := context.WithCancel(context.Background())
	var conns []*grpc.ClientConn
	defer func() {
		cancel()
		for _, cc := range conns {
			_ = cc.Close()
		}
	}()
	var startClient func(i int, c *call)
	if cfg.Client == "shim" {
		dialer := newShimDialer()
		startClient = func(_ int, c *call) { go c.runShimClient(ctx, dialer) }
	} else {
		nconn := (cfg.Streams + cfg.StreamsPerConn - 1) / cfg.StreamsPerConn
		for range nconn {
			cc, err := grpc.NewClient(cfg.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				res.Errors["dial: "+err.Error()]++
				return res
			}
			conns = append(conns, cc)
		}
		startClient = func(i int, c *call) { go c.runClient(ctx, conns[i%nconn]) }
	}

	// Ramp up.
	t0 := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.RampPerS)
	next := time.Now()
	for i, c := range st.calls {
		startClient(i, c)
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
	setupDeadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(setupDeadline) {
		pending := 0
		for _, c := range st.calls {
			if !c.started.Load() && !c.mediaOnOrEnded() {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.SetupS = time.Since(t0).Seconds()
	for _, c := range st.calls {
		if c.started.Load() {
			res.Started++
		}
	}
	progress(map[string]any{"event": "started", "started": res.Started, "setup_s": res.SetupS})

	// Warm up, then measure.
	time.Sleep(time.Duration(cfg.WarmupS * float64(time.Second)))
	self := strconv.Itoa(os.Getpid())
	gw0, _ := cpuSeconds(pid)
	lg0, _ := cpuSeconds(self)
	mb0, mt0 := machineBusy()
	st.winEnd.Store(math.MaxInt64)
	st.winStart.Store(st.now())
	progress(map[string]any{"event": "measuring", "measure_s": cfg.MeasureS})
	time.Sleep(time.Duration(cfg.MeasureS * float64(time.Second)))
	st.winEnd.Store(st.now())
	gw1, _ := cpuSeconds(pid)
	lg1, _ := cpuSeconds(self)
	mb1, mt1 := machineBusy()
	res.GatewayRSS, _ = rssKB(pid)
	res.WindowS = float64(st.winEnd.Load()-st.winStart.Load()) / 1e9
	res.GatewayCPUS = gw1 - gw0
	res.LoadgenCPUS = lg1 - lg0
	if mt1 > mt0 {
		res.MachineBusy = (mb1 - mb0) / (mt1 - mt0)
	}
	progress(map[string]any{"event": "measured"})

	// Stop: the calls on a chunk boundary, the clients by half-closing; then
	// wait for every stream to end (the gateway plays what it holds first).
	close(st.stopDown)
	time.Sleep(time.Duration(cfg.ChunkMs+40) * time.Millisecond)
	close(st.stopUp)
	deadline := time.After(time.Duration((cfg.DrainS + 10) * float64(time.Second)))
	for _, c := range st.calls {
		select {
		case <-c.ended:
		case <-deadline:
		}
	}
	time.Sleep(300 * time.Millisecond) // the last frames played into the calls
	cancel()
	for _, c := range st.calls {
		select {
		case <-c.ended:
		case <-time.After(2 * time.Second):
		}
	}
	// The gateway removes what it created once its streams end.
	var leftC, leftB int
	for i := 0; i < 50; i++ {
		a.mu.Lock()
		leftC, leftB = len(a.channels)-len(st.calls), len(a.bridges)
		a.mu.Unlock()
		if leftC == 0 && leftB == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, c := range st.calls {
		if !c.started.Load() {
			res.Failed++
		}
		if c.err != nil {
			msg := c.err.Error()
			if len(msg) > 160 {
				msg = msg[:160]
			}
			res.Errors[msg]++
		}
		if c.stopReason != "" {
			res.StopReasons[c.stopReason]++
		}
		if !c.started.Load() {
			continue
		}
		res.Down.Sent += c.downSent.Load()
		res.Down.Recv += c.downRecv.Load()
		res.Down.Bad += c.downBad.Load()
		res.Down.SentWin += c.downSentWin.Load()
		res.Up.Sent += c.upSent.Load()
		res.Up.Recv += c.upRecv.Load()
		res.Up.Bad += c.upBad.Load()
		res.Up.SentWin += c.upSentWin.Load()
	}
	res.Down.Lost = res.Down.Sent - res.Down.Recv
	res.Up.Lost = res.Up.Sent - res.Up.Recv
	res.Down.Latency = st.down.summary()
	res.Up.Latency = st.up.summary()
	floors := newHist()
	for _, c := range st.calls {
		if c.upFloorSet {
			floors.add(c.upFloor)
		}
	}
	fl := floors.summary()
	res.Up.Floor = &fl
	res.LeftChannels, res.LeftBridges = leftC, leftB
	res.EventsDropped = a.evDropped.Load()
	a.removeCalls(st)
	return res
}

func (c *call) mediaOnOrEnded() bool {
	select {
	case <-c.ended:
		return true
	default:
		return false
	}
}

var _ sync.Mutex
