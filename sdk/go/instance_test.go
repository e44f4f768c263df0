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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// Tests of scaling out: several gateway instances behind one load-balanced
// address, where a resume must reach the instance holding the stream.

// instance is a fake gateway instance on a loopback TCP port. It starts every
// stream itself (advertising its address), except resumes when redirect is
// set: those it refuses with RESUME_WRONG_INSTANCE naming redirect.
type instance struct {
	pb.UnimplementedMediaStreamServiceServer
	addr     string
	redirect string
	lis      *countingListener

	mu      sync.Mutex
	opens   int      // streams started without a resume
	resumes []string // tokens of the resumes it accepted
	refused int      // resumes it refused
	auth    []string // authorization metadata of every stream
}

func startInstance(t *testing.T) *instance {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{addr: lis.Addr().String(), lis: &countingListener{Listener: lis}}
	srv := grpc.NewServer()
	pb.RegisterMediaStreamServiceServer(srv, in)
	go srv.Serve(in.lis)
	t.Cleanup(srv.Stop)
	return in
}

// begin decides how to answer a stream's config: the StreamStarted to send,
// or the error to end the stream with.
func (in *instance) begin(ctx context.Context, cfg *pb.StreamConfig) (*pb.StreamStarted, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	in.auth = append(in.auth, md.Get("authorization")...)
	resume := cfg.GetResume()
	if resume == nil {
		in.opens++
		return &pb.StreamStarted{StreamId: "s-" + in.addr, Format: cfg.GetFormat(), SampleRateHz: 8000, FrameBytes: 320,
			ChunkMs: 20, ResumeToken: "tok@" + in.addr, InstanceAddress: in.addr}, nil
	}
	if in.redirect != "" {
		in.refused++
		st, _ := status.New(codes.NotFound, "the stream is held by another instance").WithDetails(&errdetails.ErrorInfo{
			Reason: "RESUME_WRONG_INSTANCE", Domain: "test", Metadata: map[string]string{"instance_address": in.redirect},
		})
		return nil, st.Err()
	}
	in.resumes = append(in.resumes, resume.GetToken())
	return &pb.StreamStarted{StreamId: "s-" + in.addr, Format: cfg.GetFormat(), SampleRateHz: 8000, FrameBytes: 320,
		ChunkMs: 20, ResumeToken: resume.GetToken(), Resumed: true, InstanceAddress: in.addr}, nil
}

func (in *instance) ListenMedia(req *pb.ListenMediaRequest, srv grpc.ServerStreamingServer[pb.ListenMediaResponse]) error {
	started, err := in.begin(srv.Context(), req.GetConfig())
	if err != nil {
		return err
	}
	if err := srv.Send(&pb.ListenMediaResponse{Payload: &pb.ListenMediaResponse_Started{Started: started}}); err != nil {
		return err
	}
	<-srv.Context().Done()
	return nil
}

func (in *instance) StreamMedia(srv grpc.BidiStreamingServer[pb.StreamMediaRequest, pb.StreamMediaResponse]) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	started, err := in.begin(srv.Context(), first.GetConfig())
	if err != nil {
		return err
	}
	if err := srv.Send(&pb.StreamMediaResponse{Payload: &pb.StreamMediaResponse_Started{Started: started}}); err != nil {
		return err
	}
	<-srv.Context().Done()
	return nil
}

func (in *instance) counts() (opens int, resumes []string, refused int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.opens, append([]string(nil), in.resumes...), in.refused
}

// countingListener counts the connections accepted and those still open.
type countingListener struct {
	net.Listener
	mu       sync.Mutex
	accepted int
	open     int
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.accepted++
	l.open++
	l.mu.Unlock()
	return &countedConn{Conn: conn, l: l}, nil
}

func (l *countingListener) conns() (accepted, open int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted, l.open
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// cluster is a load-balanced address (lb, which holds no streams and
// redirects every resume) and the instance that holds the streams.
func cluster(t *testing.T) (lb, holder *instance) {
	t.Helper()
	lb, holder = startInstance(t), startInstance(t)
	lb.redirect = holder.addr
	return lb, holder
}

func dialInstance(t *testing.T, addr string, opts ...mediastream.DialOption) *mediastream.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := mediastream.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func TestInfoAndResumeFromCarryTheInstanceAddress(t *testing.T) {
	holder := startInstance(t)
	client := dialInstance(t, holder.addr)
	stream, err := client.Listen(testContext(t), mediastream.Config{CallID: "c", Resumable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if got := stream.Info().InstanceAddress; got != holder.addr {
		t.Errorf("Info().InstanceAddress = %q, want %q", got, holder.addr)
	}
	if r := stream.ResumeFrom(); r.InstanceAddress != holder.addr || r.Token != "tok@"+holder.addr {
		t.Errorf("ResumeFrom() = %+v, want the token and instance address %q", r, holder.addr)
	}
}

func TestResumeIsSentToTheInstanceAddress(t *testing.T) {
	lb, holder := cluster(t)
	client := dialInstance(t, lb.addr, mediastream.WithToken("secret"))
	resume := &mediastream.Resume{Token: "tok@" + holder.addr, InstanceAddress: holder.addr}

	listen, err := client.Listen(testContext(t), mediastream.Config{CallID: "c", Resume: resume})
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close()
	duplex, err := client.Stream(testContext(t), mediastream.Config{CallID: "c", Resume: resume})
	if err != nil {
		t.Fatal(err)
	}
	defer duplex.Close()
	for _, info := range []mediastream.StreamInfo{listen.Info(), duplex.Info()} {
		if !info.Resumed || info.InstanceAddress != holder.addr {
			t.Errorf("Info() = %+v, want resumed on %s", info, holder.addr)
		}
	}
	if _, resumes, _ := holder.counts(); len(resumes) != 2 {
		t.Errorf("the holder accepted %d resumes, want 2", len(resumes))
	}
	if _, _, refused := lb.counts(); refused != 0 {
		t.Errorf("the load balancer saw %d resumes, want none", refused)
	}
	// Dialled with the client's options (the token here), once for both streams.
	holder.mu.Lock()
	auth := holder.auth
	holder.mu.Unlock()
	if len(auth) != 2 || auth[0] != "Bearer secret" || auth[1] != "Bearer secret" {
		t.Errorf("the holder saw authorization %q, want the token on both streams", auth)
	}
	if accepted, _ := holder.lis.conns(); accepted != 1 {
		t.Errorf("the holder accepted %d connections, want 1 (kept for the second resume)", accepted)
	}

	// New streams still go to the load-balanced address.
	fresh, err := client.Listen(testContext(t), mediastream.Config{CallID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if opens, _, _ := lb.counts(); opens != 1 || fresh.Info().InstanceAddress != lb.addr {
		t.Errorf("a new stream went to %s (load balancer opens %d), want the load balancer", fresh.Info().InstanceAddress, opens)
	}
	if opens, _, _ := holder.counts(); opens != 0 {
		t.Errorf("the holder opened %d new streams, want none", opens)
	}

	// Close closes the connection to the instance too.
	listen.Close()
	duplex.Close()
	fresh.Close()
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, open := holder.lis.conns(); open != 0; _, open = holder.lis.conns() {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the holder still open after Close", open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResumeAtTheOwnTargetUsesTheOwnConnection(t *testing.T) {
	holder := startInstance(t)
	client := dialInstance(t, holder.addr)
	stream, err := client.Listen(testContext(t), mediastream.Config{CallID: "c",
		Resume: &mediastream.Resume{Token: "t", InstanceAddress: holder.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if accepted, _ := holder.lis.conns(); accepted != 1 {
		t.Errorf("the holder accepted %d connections, want only the client's own", accepted)
	}
}

func TestResumeAtTheWrongInstanceIsRetriedWhereTheServerSays(t *testing.T) {
	lb, holder := cluster(t)
	client := dialInstance(t, lb.addr, mediastream.WithToken("secret"), mediastream.WithAllowedInstances(holder.addr))
	for _, resume := range []*mediastream.Resume{
		{Token: "tok1"}, // from a server that advertises no address, or an old client
		{Token: "tok2", InstanceAddress: lb.addr},
	} {
		stream, err := client.Stream(testContext(t), mediastream.Config{CallID: "c", Resume: resume})
		if err != nil {
			t.Fatalf("resume %+v: %v", resume, err)
		}
		defer stream.Close()
		if info := stream.Info(); !info.Resumed || info.InstanceAddress != holder.addr {
			t.Errorf("resume %+v: Info() = %+v, want resumed on %s", resume, info, holder.addr)
		}
	}
	if _, resumes, _ := holder.counts(); len(resumes) != 2 || resumes[0] != "tok1" || resumes[1] != "tok2" {
		t.Errorf("the holder accepted %q, want both resumes", resumes)
	}
	if _, _, refused := lb.counts(); refused != 2 {
		t.Errorf("the load balancer refused %d resumes, want 2", refused)
	}
}

func TestResumeIsRetriedOnlyOnce(t *testing.T) {
	a, b := startInstance(t), startInstance(t)
	a.redirect, b.redirect = b.addr, a.addr // each names the other
	client := dialInstance(t, a.addr, mediastream.WithAllowedInstances(a.addr, b.addr))
	_, err := client.Listen(testContext(t), mediastream.Config{CallID: "c", Resume: &mediastream.Resume{Token: "t"}})
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.NotFound || rpcErr.Reason != "RESUME_WRONG_INSTANCE" ||
		rpcErr.Metadata["instance_address"] != a.addr {
		t.Fatalf("err = %v, want the second refusal (RESUME_WRONG_INSTANCE naming %s)", err, a.addr)
	}
	_, _, refusedA := a.counts()
	_, _, refusedB := b.counts()
	if refusedA != 1 || refusedB != 1 {
		t.Errorf("refusals: %d at the target, %d at the named instance; want 1 and 1", refusedA, refusedB)
	}
}

// A forged token can make a server name any address: the client follows only
// to instances the application allows, and sends its credentials nowhere else.
func TestResumeIsNotFollowedToAnAddressNotAllowed(t *testing.T) {
	lb, holder := cluster(t)
	client := dialInstance(t, lb.addr, mediastream.WithToken("secret"), mediastream.WithAllowedInstances("other.example:443"))
	_, err := client.Listen(testContext(t), mediastream.Config{CallID: "c", Resume: &mediastream.Resume{Token: "forged"}})
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Reason != "RESUME_WRONG_INSTANCE" || rpcErr.Metadata["instance_address"] != holder.addr {
		t.Fatalf("err = %v, want the load balancer's RESUME_WRONG_INSTANCE naming %s", err, holder.addr)
	}
	if accepted, _ := holder.lis.conns(); accepted != 0 {
		t.Errorf("the named instance accepted %d connections, want none", accepted)
	}
	// NewClient's AllowInstances is the same rule.
	conn, err := grpc.NewClient(lb.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, allowed := range [][]string{nil, {holder.addr}} {
		c := mediastream.NewClient(conn, mediastream.WithInstanceDialOptions(), mediastream.AllowInstances(allowed...))
		stream, err := c.Listen(testContext(t), mediastream.Config{CallID: "c", Resume: &mediastream.Resume{Token: "t"}})
		if (err == nil) != (allowed != nil) {
			t.Errorf("allowed %v: err = %v", allowed, err)
		}
		if stream != nil {
			stream.Close()
		}
		c.Close()
	}
}

func TestNewClientDialsInstancesOnlyWithDialOptions(t *testing.T) {
	lb, holder := cluster(t)
	conn, err := grpc.NewClient(lb.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resume := &mediastream.Resume{Token: "t", InstanceAddress: holder.addr}

	// Without WithInstanceDialOptions, every stream goes on the caller's connection.
	plain := mediastream.NewClient(conn)
	_, err = plain.Listen(testContext(t), mediastream.Config{CallID: "c", Resume: resume})
	if status.Code(err) != codes.NotFound {
		t.Errorf("err = %v, want the load balancer's NotFound", err)
	}
	if accepted, _ := holder.lis.conns(); accepted != 0 {
		t.Errorf("the holder accepted %d connections, want none", accepted)
	}

	dialing := mediastream.NewClient(conn, mediastream.WithInstanceDialOptions())
	stream, err := dialing.Listen(testContext(t), mediastream.Config{CallID: "c", Resume: resume})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if info := stream.Info(); !info.Resumed || info.InstanceAddress != holder.addr {
		t.Errorf("Info() = %+v, want resumed on %s", info, holder.addr)
	}
	if err := dialing.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := plain.Listen(testContext(t), mediastream.Config{CallID: "c"})
	if err != nil {
		t.Fatalf("the caller's connection was closed by Close: %v", err)
	}
	again.Close()
}
