package mediastream_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mediastream "github.com/voipbin/mediastream/sdk/go"
)

// cutProxy forwards TCP connections to a gateway; cut closes the ones open,
// as a dropped network would, and keeps accepting new ones.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// listenThroughCut listens to the tone call through a proxy, cuts the
// connection after 20 chunks and returns the sequence numbers of 80 chunks
// (or the error that ended the stream) and the stream.
func listenThroughCut(t *testing.T, autoResume bool) ([]uint64, error, *mediastream.Stream) {
	t.Helper()
	gw := realGateway(t)
	proxy := newCutProxy(t, gw.GRPC)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	client, err := mediastream.Dial(ctx, proxy.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	stream, err := client.Listen(ctx, mediastream.Config{CallID: gw.Demo["tone_call"], AutoResume: autoResume})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stream.Close() })
	var seqs []uint64
	for len(seqs) < 80 {
		ev, err := stream.Recv()
		if err != nil {
			return seqs, err, stream
		}
		if chunk, ok := ev.(mediastream.AudioChunk); ok {
			seqs = append(seqs, chunk.SequenceNumber)
			if len(seqs) == 20 {
				proxy.cut()
			}
		}
	}
	return seqs, nil, stream
}

// With AutoResume, a dropped connection is mended behind Recv: the audio goes
// on with contiguous sequence numbers, as in Python's auto_resume (issue 21).
func TestGatewayListenResumesByItselfAfterADrop(t *testing.T) {
	seqs, err, stream := listenThroughCut(t, true)
	if err != nil {
		t.Fatalf("Recv after %d chunks: %v", len(seqs), err)
	}
	for i, seq := range seqs {
		if seq != uint64(i) {
			t.Fatalf("sequence numbers %v, want 0..79 without a gap", seqs)
		}
	}
	if n := stream.Resumes(); n != 1 {
		t.Errorf("Resumes() = %d, want 1", n)
	}
	if info := stream.Info(); !info.Resumed {
		t.Errorf("Info() = %+v, want Resumed", info)
	}
}

// Without AutoResume the same drop ends the stream with Unavailable.
func TestGatewayListenWithoutAutoResumeFailsOnADrop(t *testing.T) {
	seqs, err, stream := listenThroughCut(t, false)
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.Unavailable {
		t.Fatalf("after %d chunks: %v, want an *RPCError Unavailable", len(seqs), err)
	}
	if n := stream.Resumes(); n != 0 {
		t.Errorf("Resumes() = %d, want 0", n)
	}
}
