package mediastream

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// Client is a connection to the gateway. It is safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn // nil when the caller owns the connection
	media    pb.MediaStreamServiceClient
	external pb.ExternalMediaServiceClient
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	grpc      []grpc.DialOption
	noWaiting bool
}

// WithGRPCDialOptions passes options to grpc.NewClient, after the default
// (plaintext) credentials, so grpc.WithTransportCredentials here wins.
func WithGRPCDialOptions(opts ...grpc.DialOption) DialOption {
	return func(o *dialOptions) { o.grpc = append(o.grpc, opts...) }
}

// WithToken sends token (an API key or a JWT) as "authorization: Bearer
// <token>" with every call. Use it with TLS (WithGRPCDialOptions and
// grpc.WithTransportCredentials) anywhere but on a trusted network.
func WithToken(token string) DialOption {
	return func(o *dialOptions) { o.grpc = append(o.grpc, grpc.WithPerRPCCredentials(bearer(token))) }
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// WithoutWaiting makes Dial return at once instead of waiting until the
// connection is ready.
func WithoutWaiting() DialOption {
	return func(o *dialOptions) { o.noWaiting = true }
}

// Dial connects to the gateway at target ("host:port", or any gRPC target
// name) and waits until the connection is ready or ctx is done.
func Dial(ctx context.Context, target string, opts ...DialOption) (*Client, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	grpcOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, o.grpc...)
	conn, err := grpc.NewClient(target, grpcOpts...)
	if err != nil {
		return nil, fmt.Errorf("mediastream: dial %s: %w", target, err)
	}
	if !o.noWaiting {
		conn.Connect()
		for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
			if !conn.WaitForStateChange(ctx, state) {
				conn.Close()
				return nil, fmt.Errorf("mediastream: dial %s: %w (last state %s)", target, ctx.Err(), state)
			}
		}
	}
	c := NewClient(conn)
	c.conn = conn
	return c, nil
}

// NewClient makes a Client on a connection the caller owns (Close leaves it open).
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{media: pb.NewMediaStreamServiceClient(conn), external: pb.NewExternalMediaServiceClient(conn)}
}

// Close closes the connection if Dial opened it.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Listen opens a listen-only stream of a call or conference and waits until
// the server confirms it. The stream lives until ctx is done, Close is called,
// or the server ends it.
func (c *Client) Listen(ctx context.Context, cfg Config, opts ...grpc.CallOption) (*Stream, error) {
	config, err := cfg.proto()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	rpc, err := c.media.ListenMedia(ctx, &pb.ListenMediaRequest{Config: config}, opts...)
	if err != nil {
		cancel()
		return nil, AsRPCError(err)
	}
	s := &Stream{cancel: cancel, recvMsg: func() (Event, *pb.StreamStarted, error) {
		msg, err := rpc.Recv()
		if err != nil {
			return nil, nil, err
		}
		return listenEvent(msg), msg.GetStarted(), nil
	}}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Stream opens a two-way stream of a call or conference and waits until the
// server confirms it. The stream lives until ctx is done, Close is called,
// or the server ends it (after CloseSend, once everything sent was played).
func (c *Client) Stream(ctx context.Context, cfg Config, opts ...grpc.CallOption) (*DuplexStream, error) {
	config, err := cfg.proto()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	rpc, err := c.media.StreamMedia(ctx, opts...)
	if err != nil {
		cancel()
		return nil, AsRPCError(err)
	}
	d := &DuplexStream{rpc: rpc}
	d.cancel = cancel
	d.recvMsg = func() (Event, *pb.StreamStarted, error) {
		msg, err := rpc.Recv()
		if err != nil {
			return nil, nil, err
		}
		return streamEvent(msg), msg.GetStarted(), nil
	}
	if err := rpc.Send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Config{Config: config}}); err != nil && err != io.EOF {
		cancel()
		return nil, AsRPCError(err)
	}
	// A failed Send is reported by the first Recv with the server's status.
	if err := d.start(); err != nil {
		return nil, err
	}
	return d, nil
}

// ExternalMedia returns a client for the ExternalMediaService on the same connection.
func (c *Client) ExternalMedia() *ExternalMediaClient {
	return &ExternalMediaClient{rpc: c.external}
}

func (cfg Config) proto() (*pb.StreamConfig, error) {
	out := &pb.StreamConfig{
		Format:        cfg.Format,
		Direction:     cfg.Direction,
		ChunkMs:       cfg.ChunkMS,
		Encapsulation: cfg.Encapsulation,
		Transport:     cfg.Transport,
		Resumable:     cfg.Resumable,
	}
	switch {
	case cfg.CallID != "" && cfg.ConferenceID != "":
		return nil, ErrBothTargets
	case cfg.CallID != "":
		out.Target = &pb.StreamConfig_CallId{CallId: cfg.CallID}
	case cfg.ConferenceID != "":
		out.Target = &pb.StreamConfig_ConferenceId{ConferenceId: cfg.ConferenceID}
	}
	// Neither set: sent as is, and the server names the missing field.
	if cfg.Resume != nil {
		out.Resume = &pb.ResumeRequest{Token: cfg.Resume.Token, LastSequenceNumber: cfg.Resume.LastSequenceNumber}
	}
	return out, nil
}
