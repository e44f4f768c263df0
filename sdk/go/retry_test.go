package mediastream_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// Tests of opening a stream again when it was refused before it started (a
// draining gateway instance, a refused connection).

// refusing is a fake gateway that refuses the first `refuse` streams with
// Unavailable and `reason`, then starts them.
type refusing struct {
	pb.UnimplementedMediaStreamServiceServer
	refuse int
	reason string

	mu      sync.Mutex
	calls   int
	targets []string // x-mediastream-target of every stream
}

func (r *refusing) ListenMedia(req *pb.ListenMediaRequest, srv grpc.ServerStreamingServer[pb.ListenMediaResponse]) error {
	md, _ := metadata.FromIncomingContext(srv.Context())
	r.mu.Lock()
	r.calls++
	n := r.calls
	r.targets = append(r.targets, md.Get(mediastream.TargetHeader)...)
	r.mu.Unlock()
	if n <= r.refuse {
		st, _ := status.New(codes.Unavailable, "refused for the test").WithDetails(&errdetails.ErrorInfo{Reason: r.reason})
		return st.Err()
	}
	started := &pb.StreamStarted{StreamId: "s", Format: req.GetConfig().GetFormat(), SampleRateHz: 8000, FrameBytes: 160, ChunkMs: 20}
	if err := srv.Send(&pb.ListenMediaResponse{Payload: &pb.ListenMediaResponse_Started{Started: started}}); err != nil {
		return err
	}
	<-srv.Context().Done()
	return nil
}

func (r *refusing) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func serveRefusing(t *testing.T, r *refusing, lis net.Listener) {
	t.Helper()
	srv := grpc.NewServer()
	pb.RegisterMediaStreamServiceServer(srv, r)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
}

func startRefusing(t *testing.T, refuse int, reason string) (*refusing, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &refusing{refuse: refuse, reason: reason}
	serveRefusing(t, r, lis)
	return r, lis.Addr().String()
}

func listenOnce(t *testing.T, address string, opts ...mediastream.ClientOption) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := mediastream.Dial(ctx, address, mediastream.WithoutWaiting(), mediastream.WithClientOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, err := client.Listen(ctx, mediastream.Config{CallID: "call"})
	if err != nil {
		return 0, err
	}
	s.Close()
	return 1, nil
}

func TestAStreamRefusedByADrainingInstanceIsOpenedAgain(t *testing.T) {
	r, address := startRefusing(t, 2, "DRAINING")
	if _, err := listenOnce(t, address); err != nil {
		t.Fatalf("not opened again: %v", err)
	}
	if got := r.count(); got != 3 {
		t.Fatalf("attempts = %d, want 3 (two refusals, then the stream)", got)
	}
}

func TestOpeningAgainIsBounded(t *testing.T) {
	r, address := startRefusing(t, 100, "DRAINING")
	_, err := listenOnce(t, address, mediastream.WithOpenRetries(2))
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Reason != "DRAINING" {
		t.Fatalf("err = %v, want the DRAINING refusal", err)
	}
	if got := r.count(); got != 3 {
		t.Fatalf("attempts = %d, want 3 (the first and two more)", got)
	}
}

func TestAReasonedUnavailableIsNotOpenedAgain(t *testing.T) {
	r, address := startRefusing(t, 1, "ASTERISK_UNAVAILABLE")
	if _, err := listenOnce(t, address); err == nil {
		t.Fatal("opened, want the refusal")
	}
	if got := r.count(); got != 1 {
		t.Fatalf("attempts = %d, want 1", got)
	}
}

func TestARefusedConnectionIsTriedAgainUntilTheGatewayListens(t *testing.T) {
	// Nothing listens at first (an instance gone, a proxy restarting); then a
	// gateway does, on the same port: the next attempt reaches it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := lis.Addr().String()
	lis.Close()
	r := &refusing{}
	go func() {
		time.Sleep(200 * time.Millisecond)
		if again, err := net.Listen("tcp", address); err == nil {
			serveRefusing(t, r, again)
		}
	}()
	if _, err := listenOnce(t, address); err != nil {
		t.Fatalf("not tried again: %v", err)
	}
	if got := r.count(); got != 1 {
		t.Fatalf("streams started = %d, want 1", got)
	}
}

func TestEveryAttemptNamesTheCallForTheProxy(t *testing.T) {
	r, address := startRefusing(t, 1, "DRAINING")
	if _, err := listenOnce(t, address); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.targets) != 2 || r.targets[0] != "call:call" || r.targets[1] != "call:call" {
		t.Fatalf("x-mediastream-target = %q, want call:call on both attempts", r.targets)
	}
}

func TestAResumeGoesThroughTheOwnTargetWhenTheInstanceCannotBeReached(t *testing.T) {
	// The stream's instance advertises an address nothing listens on (NAT, outside
	// the cluster): the resume falls back to the client's own target.
	lb := startInstance(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := mediastream.Dial(ctx, lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, err := client.Listen(ctx, mediastream.Config{CallID: "call", Resumable: true,
		Resume: &mediastream.Resume{Token: "tok", InstanceAddress: "127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("resume not sent through the own target: %v", err)
	}
	s.Close()
	if _, resumes, _ := lb.counts(); len(resumes) != 1 || resumes[0] != "tok" {
		t.Fatalf("resumes at the own target = %q, want [tok]", resumes)
	}
}
