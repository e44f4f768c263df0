package mediastream_test

// The Go runner of the conformance suite in tests/conformance/scenarios.json
// (format: tests/conformance/README.md). Each scenario is a subtest.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	"github.com/voipbin/mediastream/sdk/go/internal/audiotest"
	"github.com/voipbin/mediastream/sdk/go/internal/gatewaytest"
)

const runnerName = "go"

type suiteFile struct {
	Format    int        `json:"format"`
	About     string     `json:"about"`
	Scenarios []scenario `json:"scenarios"`
}

type scenario struct {
	Name        string                       `json:"name"`
	Description string                       `json:"description"`
	Skip        map[string]string            `json:"skip"`
	TimeoutMS   int                          `json:"timeout_ms"`
	Steps       []map[string]json.RawMessage `json:"steps"`
}

func loadSuite(t *testing.T) suiteFile {
	t.Helper()
	root, err := gatewaytest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "tests", "conformance", "scenarios.json"))
	if err != nil {
		t.Fatal(err)
	}
	var suite suiteFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&suite); err != nil {
		t.Fatalf("scenarios.json: %v", err)
	}
	if suite.Format != 1 {
		t.Fatalf("scenarios.json: format %d, this runner reads format 1", suite.Format)
	}
	return suite
}

func TestConformance(t *testing.T) {
	suite := loadSuite(t)
	client, gw := dialGateway(t)
	for _, sc := range suite.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			if reason := skipReason(sc.Skip); reason != "" {
				t.Skip(reason)
			}
			timeout := 20 * time.Second
			if sc.TimeoutMS > 0 {
				timeout = time.Duration(sc.TimeoutMS) * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			r := &runner{t: t, ctx: ctx, client: client, vars: map[string]string{}, streams: map[string]*confStream{}}
			if cutsConnection(sc) {
				// Its own client, through a proxy that cut_connection cuts.
				r.proxy = newCutProxy(t, gw.GRPC)
				own, err := mediastream.Dial(ctx, r.proxy.addr())
				if err != nil {
					t.Fatal(err)
				}
				defer own.Close()
				r.client = own
			}
			for name, id := range gw.Demo {
				r.vars[name] = id
			}
			defer r.closeAll()
			for i, step := range sc.Steps {
				if len(step) != 1 {
					t.Fatalf("step %d: a step has exactly one kind, got %d keys", i+1, len(step))
				}
				for kind, args := range step {
					if err := r.run(kind, args); err != nil {
						t.Fatalf("step %d (%s): %v", i+1, kind, err)
					}
				}
			}
		})
	}
}

// cutsConnection reports whether a scenario has a cut_connection step.
func cutsConnection(sc scenario) bool {
	for _, step := range sc.Steps {
		if _, ok := step["cut_connection"]; ok {
			return true
		}
	}
	return false
}

func skipReason(skip map[string]string) string {
	if reason, ok := skip[runnerName]; ok {
		return reason
	}
	return skip["all"]
}

// confStream is one open stream and everything received on it.
type confStream struct {
	listen *mediastream.Stream
	duplex *mediastream.DuplexStream
	info   mediastream.StreamInfo

	mu      sync.Mutex
	audio   []mediastream.AudioChunk
	events  []mediastream.Event
	stopped *mediastream.Stopped
	done    bool
	err     error // the open error, or the error that ended the stream

	mark    int // audio[mark:] is what the next receive_audio captures
	capture []mediastream.AudioChunk

	sends, sentWhilePaused int // audio sends, and those that returned while paused
	cancelDeadline         context.CancelFunc
}

func (s *confStream) receive() {
	for {
		ev, err := s.listen.Recv()
		s.mu.Lock()
		if err != nil {
			s.done = true
			if err != io.EOF {
				s.err = err
			}
			s.mu.Unlock()
			return
		}
		switch e := ev.(type) {
		case mediastream.AudioChunk:
			s.audio = append(s.audio, e)
		case mediastream.Stopped:
			s.stopped = &e
		default:
			s.events = append(s.events, e)
		}
		s.mu.Unlock()
	}
}

type runner struct {
	t       *testing.T
	ctx     context.Context
	client  *mediastream.Client
	proxy   *cutProxy // set when the scenario cuts its connection
	vars    map[string]string
	streams map[string]*confStream
	saved   map[string]*mediastream.ExternalMedia
	lastErr map[string]error // the error of the last external_media step, by save_as name
}

func (r *runner) closeAll() {
	for _, s := range r.streams {
		if s.listen != nil {
			s.listen.Close()
		}
		if s.cancelDeadline != nil {
			s.cancelDeadline()
		}
	}
}

// waitFor polls cond (under the stream's lock) until it holds or the scenario times out.
func (r *runner) waitFor(s *confStream, what string, cond func() bool) error {
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-r.ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func decode(args json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (r *runner) subst(v string) string {
	if strings.HasPrefix(v, "$") {
		if id, ok := r.vars[v[1:]]; ok {
			return id
		}
		r.t.Fatalf("unknown variable %s", v)
	}
	return v
}

func (r *runner) stream(name string) (*confStream, error) {
	if name == "" {
		name = "main"
	}
	s, ok := r.streams[name]
	if !ok {
		return nil, fmt.Errorf("no stream %q was opened", name)
	}
	return s, nil
}

// streamOK returns the named stream, failing if it was refused or failed.
func (r *runner) streamOK(name string) (*confStream, error) {
	s, err := r.stream(name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, fmt.Errorf("unexpected error: %w", s.err)
	}
	return s, nil
}

func (r *runner) run(kind string, args json.RawMessage) error {
	switch kind {
	case "open":
		return r.open(args)
	case "expect_started":
		return r.expectStarted(args)
	case "expect_error":
		return r.expectError(args)
	case "expect_config_error":
		return r.expectConfigError(args)
	case "expect_sends_not_paused":
		return r.expectSendsNotPaused(args)
	case "expect_send_fails":
		return r.expectSendFails(args)
	case "send_tone", "send_silence":
		return r.sendTone(kind, args)
	case "send_dtmf", "send_mark", "send_clear", "send_hangup", "close_send":
		return r.sendControl(kind, args)
	case "receive_audio":
		return r.receiveAudio(args)
	case "expect_chunks":
		return r.expectChunks(args)
	case "expect_tone":
		return r.expectTone(args)
	case "expect_event":
		return r.expectEvent(args)
	case "expect_stopped":
		return r.expectStopped(args)
	case "cancel":
		var a struct{ Stream string }
		if err := decode(args, &a); err != nil {
			return err
		}
		s, err := r.stream(a.Stream)
		if err != nil {
			return err
		}
		if s.listen != nil {
			s.listen.Cancel()
		}
		return r.waitFor(s, "the stream to end", func() bool { return s.done })
	case "close":
		// What `defer stream.Close()` does; it must return within the scenario's deadline.
		var a struct{ Stream string }
		if err := decode(args, &a); err != nil {
			return err
		}
		s, err := r.stream(a.Stream)
		if err != nil {
			return err
		}
		closed := make(chan error, 1)
		go func() {
			if s.duplex != nil {
				closed <- s.duplex.Close()
			} else if s.listen != nil {
				closed <- s.listen.Close()
			} else {
				closed <- nil
			}
		}()
		select {
		case err := <-closed:
			return err
		case <-r.ctx.Done():
			return fmt.Errorf("timed out waiting for Close")
		}
	case "cut_connection":
		if err := decode(args, &struct{}{}); err != nil {
			return err
		}
		r.proxy.cut()
		return nil
	case "sleep":
		var a struct{ MS int }
		if err := decode(args, &a); err != nil {
			return err
		}
		select {
		case <-time.After(time.Duration(a.MS) * time.Millisecond):
			return nil
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	case "external_media":
		return r.externalMedia(args)
	}
	return fmt.Errorf("unknown step kind %q", kind)
}

var (
	formats = map[string]mediastream.AudioFormat{"unspecified": mediastream.FormatUnspecified,
		"ulaw": mediastream.FormatULAW, "slin": mediastream.FormatSLIN, "slin16": mediastream.FormatSLIN16}
	directions = map[string]mediastream.Direction{"unspecified": mediastream.DirectionUnspecified,
		"both": mediastream.DirectionBoth, "in": mediastream.DirectionIn, "out": mediastream.DirectionOut}
	encapsulations = map[string]mediastream.Encapsulation{"unspecified": mediastream.EncapsulationUnspecified,
		"rtp": mediastream.EncapsulationRTP, "sln": mediastream.EncapsulationSLN, "audiosocket": mediastream.EncapsulationAudioSocket}
	transports = map[string]mediastream.Transport{"unspecified": mediastream.TransportUnspecified,
		"rtp": mediastream.TransportRTP, "audiosocket": mediastream.TransportAudioSocket, "websocket": mediastream.TransportWebSocket}
	stopReasons = map[string]mediastream.StopReason{"UNSPECIFIED": mediastream.StopReasonUnspecified,
		"CLIENT_DONE": mediastream.StopReasonClientDone, "CALL_HANGUP": mediastream.StopReasonCallHangup,
		"CONFERENCE_ENDED": mediastream.StopReasonConferenceEnded, "SERVER_SHUTDOWN": mediastream.StopReasonServerShutdown,
		"ASTERISK_FAILURE": mediastream.StopReasonAsteriskFailure, "CLIENT_HANGUP": mediastream.StopReasonClientHangup}
	externalEncapsulations = map[string]mediastream.ExternalMediaEncapsulation{"unspecified": 0,
		"rtp": mediastream.ExternalMediaRTP, "audiosocket": mediastream.ExternalMediaAudioSocket, "sln": mediastream.ExternalMediaSLN}
	externalStatuses = map[string]mediastream.ExternalMediaStatus{"running": mediastream.ExternalMediaRunning,
		"terminating": mediastream.ExternalMediaTerminating, "terminated": mediastream.ExternalMediaTerminated}
	grpcCodes = map[string]codes.Code{"OK": codes.OK, "CANCELLED": codes.Canceled, "UNKNOWN": codes.Unknown,
		"INVALID_ARGUMENT": codes.InvalidArgument, "DEADLINE_EXCEEDED": codes.DeadlineExceeded, "NOT_FOUND": codes.NotFound,
		"ALREADY_EXISTS": codes.AlreadyExists, "PERMISSION_DENIED": codes.PermissionDenied,
		"RESOURCE_EXHAUSTED": codes.ResourceExhausted, "FAILED_PRECONDITION": codes.FailedPrecondition,
		"ABORTED": codes.Aborted, "OUT_OF_RANGE": codes.OutOfRange, "UNIMPLEMENTED": codes.Unimplemented,
		"INTERNAL": codes.Internal, "UNAVAILABLE": codes.Unavailable, "DATA_LOSS": codes.DataLoss,
		"UNAUTHENTICATED": codes.Unauthenticated}
)

// enumValue reads an enum given by name (a key of table) or by number.
func enumValue[T ~int32](raw json.RawMessage, table map[string]T) (T, error) {
	if raw == nil {
		return 0, nil
	}
	var name string
	if err := json.Unmarshal(raw, &name); err == nil {
		v, ok := table[name]
		if !ok {
			return 0, fmt.Errorf("unknown enum name %q", name)
		}
		return v, nil
	}
	var n int32
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("enum %s: %w", raw, err)
	}
	return T(n), nil
}

type configArgs struct {
	CallID        string          `json:"call_id"`
	ConferenceID  string          `json:"conference_id"`
	Format        json.RawMessage `json:"format"`
	Direction     json.RawMessage `json:"direction"`
	ChunkMS       uint32          `json:"chunk_ms"`
	Encapsulation json.RawMessage `json:"encapsulation"`
	Transport     json.RawMessage `json:"transport"`
	Resumable     bool            `json:"resumable"`
	AutoResume    bool            `json:"auto_resume"`
	Resume        *struct {
		From  string `json:"from"`
		Token string `json:"token"`
	} `json:"resume"`
}

func (r *runner) config(a configArgs) (mediastream.Config, error) {
	cfg := mediastream.Config{CallID: r.subst(a.CallID), ConferenceID: r.subst(a.ConferenceID), ChunkMS: a.ChunkMS, Resumable: a.Resumable, AutoResume: a.AutoResume}
	var err error
	if cfg.Format, err = enumValue(a.Format, formats); err != nil {
		return cfg, err
	}
	if cfg.Direction, err = enumValue(a.Direction, directions); err != nil {
		return cfg, err
	}
	if cfg.Encapsulation, err = enumValue(a.Encapsulation, encapsulations); err != nil {
		return cfg, err
	}
	if cfg.Transport, err = enumValue(a.Transport, transports); err != nil {
		return cfg, err
	}
	switch {
	case a.Resume == nil:
	case a.Resume.From != "":
		from, err := r.stream(a.Resume.From)
		if err != nil {
			return cfg, err
		}
		if from.listen == nil {
			return cfg, fmt.Errorf("stream %q never started", a.Resume.From)
		}
		cfg.Resume = from.listen.ResumeFrom()
	default:
		cfg.Resume = &mediastream.Resume{Token: a.Resume.Token}
	}
	return cfg, nil
}

func (r *runner) open(args json.RawMessage) error {
	var a struct {
		RPC        string     `json:"rpc"`
		Stream     string     `json:"stream"`
		Config     configArgs `json:"config"`
		DeadlineMS int        `json:"deadline_ms"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	if a.Stream == "" {
		a.Stream = "main"
	}
	cfg, err := r.config(a.Config)
	if err != nil {
		return err
	}
	s := &confStream{}
	r.streams[a.Stream] = s
	ctx := r.ctx
	if a.DeadlineMS > 0 {
		ctx, s.cancelDeadline = context.WithTimeout(ctx, time.Duration(a.DeadlineMS)*time.Millisecond)
	}
	switch a.RPC {
	case "listen":
		s.listen, s.err = r.client.Listen(ctx, cfg)
	case "stream":
		s.duplex, s.err = r.client.Stream(ctx, cfg)
		if s.duplex != nil {
			s.listen = &s.duplex.Stream
		}
	default:
		return fmt.Errorf("rpc must be listen or stream, not %q", a.RPC)
	}
	if s.err != nil {
		s.done = true
		return nil // expect_error checks it; any other step fails on it
	}
	s.info = s.listen.Info()
	go s.receive()
	return nil
}

func (r *runner) expectStarted(args json.RawMessage) error {
	var a struct {
		Stream        string          `json:"stream"`
		Format        json.RawMessage `json:"format"`
		SampleRateHz  *uint32         `json:"sample_rate_hz"`
		FrameBytes    *uint32         `json:"frame_bytes"`
		ChunkMS       *uint32         `json:"chunk_ms"`
		Encapsulation json.RawMessage `json:"encapsulation"`
		Transport     json.RawMessage `json:"transport"`
		Resumed       *bool           `json:"resumed"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.streamOK(a.Stream)
	if err != nil {
		return err
	}
	info := s.info
	var problems []string
	check := func(field string, want, got any) {
		if !reflect.DeepEqual(want, got) {
			problems = append(problems, fmt.Sprintf("%s = %v, want %v", field, got, want))
		}
	}
	if a.Format != nil {
		f, err := enumValue(a.Format, formats)
		if err != nil {
			return err
		}
		check("format", f, info.Format)
	}
	if a.SampleRateHz != nil {
		check("sample_rate_hz", *a.SampleRateHz, info.SampleRateHz)
	}
	if a.FrameBytes != nil {
		check("frame_bytes", *a.FrameBytes, info.FrameBytes)
	}
	if a.ChunkMS != nil {
		check("chunk_ms", *a.ChunkMS, info.ChunkMS)
	}
	if a.Encapsulation != nil {
		e, err := enumValue(a.Encapsulation, encapsulations)
		if err != nil {
			return err
		}
		check("encapsulation", e, info.Encapsulation)
	}
	if a.Transport != nil {
		tr, err := enumValue(a.Transport, transports)
		if err != nil {
			return err
		}
		check("transport", tr, info.Transport)
	}
	if a.Resumed != nil {
		check("resumed", *a.Resumed, info.Resumed)
	}
	if problems != nil {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

type errorArgs struct {
	Stream   string            `json:"stream"`
	Code     string            `json:"code"`
	Reason   *string           `json:"reason"`
	Field    *string           `json:"field"`
	Metadata map[string]string `json:"metadata"`
}

func (r *runner) expectError(args json.RawMessage) error {
	var a errorArgs
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	if err := r.waitFor(s, "the stream to fail", func() bool { return s.done }); err != nil {
		return err
	}
	return checkError(a, s.err)
}

func (r *runner) expectSendsNotPaused(args json.RawMessage) error {
	var a struct {
		Stream string `json:"stream"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	if s.sends == 0 {
		return errors.New("nothing was sent")
	}
	if s.sentWhilePaused > 1 {
		return fmt.Errorf("%d of %d sends returned while the stream was paused", s.sentWhilePaused, s.sends)
	}
	return nil
}

func (r *runner) expectSendFails(args json.RawMessage) error {
	var a struct {
		Stream string `json:"stream"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	if s.duplex == nil {
		return errors.New("expect_send_fails needs a stream opened with rpc stream")
	}
	// gRPC's SendMsg after the stream ended: io.EOF (Recv says why), or an
	// *RPCError after CloseSend. Never nil.
	if err := s.duplex.Send(make([]byte, s.info.FrameBytes)); err == nil {
		return errors.New("a send after the stream ended succeeded")
	}
	return nil
}

func (r *runner) expectConfigError(args json.RawMessage) error {
	var a struct {
		Stream string `json:"stream"`
		Reason string `json:"reason"`
		Field  string `json:"field"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	var cfgErr *mediastream.ConfigError
	if !errors.As(s.err, &cfgErr) {
		return fmt.Errorf("error %v is not a *ConfigError", s.err)
	}
	if cfgErr.Reason != a.Reason || cfgErr.Field != a.Field {
		return fmt.Errorf("config error %s on %s, want %s on %s", cfgErr.Reason, cfgErr.Field, a.Reason, a.Field)
	}
	return nil
}

func checkError(a errorArgs, err error) error {
	if err == nil {
		return fmt.Errorf("the call succeeded, want %s", a.Code)
	}
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) {
		return fmt.Errorf("error %v is not an *RPCError", err)
	}
	want, ok := grpcCodes[a.Code]
	if !ok {
		return fmt.Errorf("unknown code %q", a.Code)
	}
	var problems []string
	if rpcErr.Code != want {
		problems = append(problems, fmt.Sprintf("code %v, want %s", rpcErr.Code, a.Code))
	}
	// A cancelled or timed-out stream's error is the context's error too.
	if want == codes.Canceled && !errors.Is(err, context.Canceled) {
		problems = append(problems, "not errors.Is(err, context.Canceled)")
	}
	if want == codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
		problems = append(problems, "not errors.Is(err, context.DeadlineExceeded)")
	}
	if a.Reason != nil && rpcErr.Reason != *a.Reason {
		problems = append(problems, fmt.Sprintf("reason %q, want %q", rpcErr.Reason, *a.Reason))
	}
	if a.Field != nil {
		var fields []string
		for _, v := range rpcErr.FieldViolations {
			fields = append(fields, v.Field)
		}
		if !reflect.DeepEqual(fields, []string{*a.Field}) {
			problems = append(problems, fmt.Sprintf("field violations %v, want [%s]", fields, *a.Field))
		}
	}
	for k, v := range a.Metadata {
		if rpcErr.Metadata[k] != v {
			problems = append(problems, fmt.Sprintf("metadata[%s] = %q, want %q", k, rpcErr.Metadata[k], v))
		}
	}
	if problems != nil {
		return fmt.Errorf("%s (error: %v)", strings.Join(problems, "; "), rpcErr)
	}
	return nil
}

// samples decodes a chunk's audio (without its encapsulation header).
func samples(info mediastream.StreamInfo, chunks []mediastream.AudioChunk) ([]float64, error) {
	var out []float64
	for _, c := range chunks {
		data := c.Data
		switch info.Encapsulation {
		case mediastream.EncapsulationRTP:
			if len(data) < 12 {
				return nil, fmt.Errorf("RTP chunk of %d bytes", len(data))
			}
			data = data[12:]
		case mediastream.EncapsulationAudioSocket:
			if len(data) < 3 {
				return nil, fmt.Errorf("AudioSocket chunk of %d bytes", len(data))
			}
			data = data[3:]
		}
		if info.Format == mediastream.FormatULAW {
			out = append(out, audiotest.FromULaw(data)...)
		} else {
			out = append(out, audiotest.FromPCM16(data)...)
		}
	}
	return out, nil
}

func (r *runner) sendTone(kind string, args json.RawMessage) error {
	var a struct {
		Stream    string  `json:"stream"`
		Hz        float64 `json:"hz"`
		MS        int     `json:"ms"`
		Amplitude float64 `json:"amplitude"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	if kind == "send_silence" {
		a.Hz, a.Amplitude = 0, 0
	} else if a.Amplitude == 0 {
		a.Amplitude = 8000
	}
	s, err := r.streamOK(a.Stream)
	if err != nil {
		return err
	}
	if s.duplex == nil {
		return errors.New("sending needs a stream opened with rpc stream")
	}
	info := s.info
	if e := info.Encapsulation; e != mediastream.EncapsulationSLN && e != mediastream.EncapsulationUnspecified {
		return fmt.Errorf("the runners send bare samples only, not %v", e)
	}
	tone := audiotest.Sine(a.Hz, a.MS, int(info.SampleRateHz), a.Amplitude)
	var data []byte
	if info.Format == mediastream.FormatULAW {
		data = audiotest.ULaw(tone)
	} else {
		data = audiotest.PCM16(tone)
	}
	for size := info.ChunkBytes(); len(data) > 0; {
		n := min(size, len(data))
		if err := s.duplex.Send(data[:n]); err != nil {
			return err
		}
		s.sends++
		if s.duplex.Paused() {
			s.sentWhilePaused++
		}
		data = data[n:]
	}
	return nil
}

func (r *runner) sendControl(kind string, args json.RawMessage) error {
	var a struct {
		Stream     string `json:"stream"`
		Digits     string `json:"digits"`
		DurationMS int    `json:"duration_ms"`
		Name       string `json:"name"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.streamOK(a.Stream)
	if err != nil {
		return err
	}
	if s.duplex == nil {
		return errors.New("sending needs a stream opened with rpc stream")
	}
	switch kind {
	case "send_dtmf":
		return s.duplex.SendDTMF(a.Digits, time.Duration(a.DurationMS)*time.Millisecond)
	case "send_mark":
		return s.duplex.Mark(a.Name)
	case "send_clear":
		return s.duplex.Clear()
	case "send_hangup":
		return s.duplex.Hangup()
	default:
		return s.duplex.CloseSend()
	}
}

func (r *runner) receiveAudio(args json.RawMessage) error {
	var a struct {
		Stream string `json:"stream"`
		MS     int    `json:"ms"`
		Until  string `json:"until"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.streamOK(a.Stream)
	if err != nil {
		return err
	}
	switch {
	case a.Until == "stopped":
		err = r.waitFor(s, "the stream to stop", func() bool { return s.done })
	case a.Until == "" && a.MS > 0:
		err = r.waitFor(s, fmt.Sprintf("%d ms of audio", a.MS), func() bool {
			return (len(s.audio)-s.mark)*int(s.info.ChunkMS) >= a.MS || s.done
		})
	default:
		return errors.New(`receive_audio needs ms or until: "stopped"`)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("unexpected error: %w", s.err)
	}
	s.capture = append([]mediastream.AudioChunk(nil), s.audio[s.mark:]...)
	s.mark = len(s.audio)
	if a.MS > 0 && len(s.capture)*int(s.info.ChunkMS) < a.MS {
		return fmt.Errorf("the stream ended after %d ms of audio, want %d", len(s.capture)*int(s.info.ChunkMS), a.MS)
	}
	return nil
}

func (r *runner) expectChunks(args json.RawMessage) error {
	var a struct {
		Stream              string  `json:"stream"`
		Count               *int    `json:"count"`
		Bytes               *int    `json:"bytes"`
		FirstSequenceNumber *uint64 `json:"first_sequence_number"`
		FirstTimestamp      *uint64 `json:"first_timestamp"`
		TimestampStep       *uint64 `json:"timestamp_step"`
		Continues           string  `json:"continues"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	chunks := s.capture
	if a.Count != nil {
		if len(chunks) < *a.Count {
			return fmt.Errorf("captured %d chunks, want at least %d", len(chunks), *a.Count)
		}
		chunks = chunks[:*a.Count]
	}
	if len(chunks) == 0 {
		return errors.New("no audio was captured")
	}
	for i, c := range chunks {
		if a.Bytes != nil && len(c.Data) != *a.Bytes {
			return fmt.Errorf("chunk %d has %d bytes, want %d", i, len(c.Data), *a.Bytes)
		}
		if c.SequenceNumber != chunks[0].SequenceNumber+uint64(i) {
			return fmt.Errorf("chunk %d has sequence number %d after %d", i, c.SequenceNumber, chunks[0].SequenceNumber)
		}
		if a.TimestampStep != nil && c.Timestamp != chunks[0].Timestamp+uint64(i)*(*a.TimestampStep) {
			return fmt.Errorf("chunk %d has timestamp %d, want %d", i, c.Timestamp, chunks[0].Timestamp+uint64(i)*(*a.TimestampStep))
		}
	}
	if a.FirstSequenceNumber != nil && chunks[0].SequenceNumber != *a.FirstSequenceNumber {
		return fmt.Errorf("first sequence number %d, want %d", chunks[0].SequenceNumber, *a.FirstSequenceNumber)
	}
	if a.Continues != "" {
		prev, err := r.stream(a.Continues)
		if err != nil {
			return err
		}
		last := prev.listen.ResumeFrom().LastSequenceNumber
		if last == nil {
			return fmt.Errorf("stream %q received no audio", a.Continues)
		}
		if chunks[0].SequenceNumber != *last+1 {
			return fmt.Errorf("first sequence number %d, want %d (after the last of stream %q)", chunks[0].SequenceNumber, *last+1, a.Continues)
		}
	}
	if a.FirstTimestamp != nil && chunks[0].Timestamp != *a.FirstTimestamp {
		return fmt.Errorf("first timestamp %d, want %d", chunks[0].Timestamp, *a.FirstTimestamp)
	}
	return nil
}

func (r *runner) expectTone(args json.RawMessage) error {
	var a struct {
		Stream      string   `json:"stream"`
		Hz          float64  `json:"hz"`
		ToleranceHz *float64 `json:"tolerance_hz"`
		MinLevel    float64  `json:"min_level"`
		WindowMS    int      `json:"window_ms"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	tolerance := 3.0
	if a.ToleranceHz != nil {
		tolerance = *a.ToleranceHz
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	rate := int(s.info.SampleRateHz)
	x, err := samples(s.info, s.capture)
	if err != nil {
		return err
	}
	if a.WindowMS > 0 {
		size, step := a.WindowMS*rate/1000, 20*rate/1000
		if len(x) < size {
			return fmt.Errorf("captured %d ms of audio, less than the %d ms window", 1000*len(x)/rate, a.WindowMS)
		}
		best, bestLevel := 0, -1.0
		for start := 0; start+size <= len(x); start += step {
			if lvl := audiotest.ToneLevel(x[start:start+size], rate, a.Hz); lvl > bestLevel {
				best, bestLevel = start, lvl
			}
		}
		x = x[best : best+size]
	}
	if len(x) == 0 {
		return errors.New("no audio was captured")
	}
	hz := audiotest.DominantHz(x, rate)
	level := audiotest.ToneLevel(x, rate, a.Hz)
	if math.Abs(hz-a.Hz) > tolerance {
		return fmt.Errorf("dominant frequency %.1f Hz, want %.1f ± %.1f (level at %.0f Hz: %.0f)", hz, a.Hz, tolerance, a.Hz, level)
	}
	if level < a.MinLevel {
		return fmt.Errorf("level at %.0f Hz is %.0f, want at least %.0f", a.Hz, level, a.MinLevel)
	}
	return nil
}

func (r *runner) expectEvent(args json.RawMessage) error {
	var a struct {
		Stream       string   `json:"stream"`
		Type         string   `json:"type"`
		Digit        *string  `json:"digit"`
		DurationMS   *int64   `json:"duration_ms"`
		Name         *string  `json:"name"`
		PositionMS   *int64   `json:"position_ms"`
		DroppedMarks []string `json:"dropped_marks"`
		State        *string  `json:"state"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	// mismatch describes how ev differs from what the step expects ("" if it matches).
	mismatch := func(ev mediastream.Event) string {
		var problems []string
		check := func(field string, want, got any) {
			if !reflect.DeepEqual(want, got) {
				problems = append(problems, fmt.Sprintf("%s = %v, want %v", field, got, want))
			}
		}
		switch e := ev.(type) {
		case mediastream.DTMFReceived:
			check("type", a.Type, "dtmf")
			if a.Digit != nil {
				check("digit", *a.Digit, e.Digit)
			}
			if a.DurationMS != nil {
				check("duration_ms", *a.DurationMS, e.Duration.Milliseconds())
			}
		case mediastream.MarkPlayed:
			check("type", a.Type, "mark")
			if a.Name != nil {
				check("name", *a.Name, e.Name)
			}
			if a.PositionMS != nil {
				check("position_ms", *a.PositionMS, e.Position.Milliseconds())
			}
		case mediastream.Cleared:
			check("type", a.Type, "cleared")
			if a.DroppedMarks != nil {
				check("dropped_marks", a.DroppedMarks, append([]string{}, e.DroppedMarks...))
			}
		case mediastream.FlowControl:
			check("type", a.Type, "flow")
			if a.State != nil {
				state := map[mediastream.FlowState]string{mediastream.FlowPause: "pause", mediastream.FlowResume: "resume"}[e.State]
				check("state", *a.State, state)
			}
		}
		return strings.Join(problems, ", ")
	}
	var found bool
	var seen []string
	err = r.waitFor(s, "a matching "+a.Type+" event", func() bool {
		for len(s.events) > 0 {
			ev := s.events[0]
			s.events = s.events[1:]
			if m := mismatch(ev); m == "" {
				found = true
				return true
			} else if !strings.HasPrefix(m, "type =") {
				seen = append(seen, fmt.Sprintf("%+v (%s)", ev, m))
			}
		}
		return s.done
	})
	if err == nil && !found {
		s.mu.Lock()
		err = fmt.Errorf("the stream ended (error: %v) before a matching %s event", s.err, a.Type)
		s.mu.Unlock()
	}
	if err != nil && seen != nil {
		return fmt.Errorf("%w; non-matching %s events: %s", err, a.Type, strings.Join(seen, "; "))
	}
	return err
}

func (r *runner) expectStopped(args json.RawMessage) error {
	var a struct {
		Stream string `json:"stream"`
		Reason string `json:"reason"`
	}
	if err := decode(args, &a); err != nil {
		return err
	}
	s, err := r.stream(a.Stream)
	if err != nil {
		return err
	}
	if err := r.waitFor(s, "the stream to stop", func() bool { return s.done }); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("the stream failed: %w", s.err)
	}
	if s.stopped == nil {
		return errors.New("the stream ended without a stopped event")
	}
	want, ok := stopReasons[a.Reason]
	if !ok {
		return fmt.Errorf("unknown stop reason %q", a.Reason)
	}
	if s.stopped.Reason != want {
		return fmt.Errorf("stopped with %v (%s), want %s", s.stopped.Reason, s.stopped.Detail, a.Reason)
	}
	return nil
}

type externalMediaArgs struct {
	Op          string          `json:"op"`
	Request     json.RawMessage `json:"request"`
	SaveAs      string          `json:"save_as"`
	Expect      json.RawMessage `json:"expect"`
	ExpectError *errorArgs      `json:"expect_error"`
}

type externalMediaRequest struct {
	ID            string          `json:"id"`
	CallID        string          `json:"call_id"`
	ConferenceID  string          `json:"conference_id"`
	ExternalHost  string          `json:"external_host"`
	Encapsulation json.RawMessage `json:"encapsulation"`
	Format        json.RawMessage `json:"format"`
	Direction     json.RawMessage `json:"direction"`
}

type externalMediaExpect struct {
	Count         *int            `json:"count"`
	Status        json.RawMessage `json:"status"`
	CallID        *string         `json:"call_id"`
	ConferenceID  *string         `json:"conference_id"`
	ExternalHost  *string         `json:"external_host"`
	Encapsulation json.RawMessage `json:"encapsulation"`
	Format        json.RawMessage `json:"format"`
	Direction     json.RawMessage `json:"direction"`
	SameIDAs      string          `json:"same_id_as"`
	Includes      string          `json:"includes"`
}

func (r *runner) externalMedia(args json.RawMessage) error {
	var a externalMediaArgs
	if err := decode(args, &a); err != nil {
		return err
	}
	var req externalMediaRequest
	if a.Request != nil {
		if err := decode(a.Request, &req); err != nil {
			return err
		}
	}
	em := r.client.ExternalMedia()
	var result []*mediastream.ExternalMedia
	var err error
	switch a.Op {
	case "start":
		cfg := mediastream.ExternalMediaConfig{CallID: r.subst(req.CallID), ConferenceID: r.subst(req.ConferenceID), ExternalHost: req.ExternalHost}
		if cfg.Encapsulation, err = enumValue(req.Encapsulation, externalEncapsulations); err != nil {
			return err
		}
		if cfg.Format, err = enumValue(req.Format, formats); err != nil {
			return err
		}
		if cfg.Direction, err = enumValue(req.Direction, directions); err != nil {
			return err
		}
		var m *mediastream.ExternalMedia
		if m, err = em.Start(r.ctx, cfg); m != nil {
			result = []*mediastream.ExternalMedia{m}
		}
	case "get":
		var m *mediastream.ExternalMedia
		if m, err = em.Get(r.ctx, r.subst(req.ID)); m != nil {
			result = []*mediastream.ExternalMedia{m}
		}
	case "stop":
		switch {
		case req.ID != "":
			result, err = em.Stop(r.ctx, r.subst(req.ID))
		case req.CallID != "":
			result, err = em.StopCall(r.ctx, r.subst(req.CallID))
		default:
			result, err = em.StopConference(r.ctx, r.subst(req.ConferenceID))
		}
	case "list":
		result, err = em.List(r.ctx, mediastream.ListFilter{CallID: r.subst(req.CallID), ConferenceID: r.subst(req.ConferenceID)})
	default:
		return fmt.Errorf("op must be start, stop, get or list, not %q", a.Op)
	}
	if a.ExpectError != nil {
		return checkError(*a.ExpectError, err)
	}
	if err != nil {
		return fmt.Errorf("unexpected error: %w", err)
	}
	if a.SaveAs != "" && len(result) > 0 {
		r.vars[a.SaveAs] = result[0].ID
	}
	if a.Expect == nil {
		return nil
	}
	var want externalMediaExpect
	if err := decode(a.Expect, &want); err != nil {
		return err
	}
	if want.Count != nil && len(result) != *want.Count {
		return fmt.Errorf("%d external media, want %d", len(result), *want.Count)
	}
	if want.Includes != "" {
		var match []*mediastream.ExternalMedia
		for _, m := range result {
			if m.ID == r.vars[want.Includes] {
				match = append(match, m)
			}
		}
		if len(match) == 0 {
			return fmt.Errorf("no external media %s (%s) among the %d returned", want.Includes, r.vars[want.Includes], len(result))
		}
		result = match
	}
	var problems []string
	for _, m := range result {
		check := func(field string, want, got any) {
			if !reflect.DeepEqual(want, got) {
				problems = append(problems, fmt.Sprintf("%s: %s = %v, want %v", m.ID, field, got, want))
			}
		}
		if want.Status != nil {
			st, err := enumValue(want.Status, externalStatuses)
			if err != nil {
				return err
			}
			check("status", st, m.Status)
		}
		if want.CallID != nil {
			check("call_id", r.subst(*want.CallID), m.CallID)
		}
		if want.ConferenceID != nil {
			check("conference_id", r.subst(*want.ConferenceID), m.ConferenceID)
		}
		if want.ExternalHost != nil {
			check("external_host", *want.ExternalHost, m.ExternalHost)
		}
		if want.Encapsulation != nil {
			e, err := enumValue(want.Encapsulation, externalEncapsulations)
			if err != nil {
				return err
			}
			check("encapsulation", e, m.Encapsulation)
		}
		if want.Format != nil {
			f, err := enumValue(want.Format, formats)
			if err != nil {
				return err
			}
			check("format", f, m.Format)
		}
		if want.Direction != nil {
			d, err := enumValue(want.Direction, directions)
			if err != nil {
				return err
			}
			check("direction", d, m.Direction)
		}
		if want.SameIDAs != "" {
			check("id", r.vars[want.SameIDAs], m.ID)
		}
	}
	sort.Strings(problems)
	if problems != nil {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
