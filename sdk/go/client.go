package mediastream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// reasonWrongInstance is the ErrorInfo reason of a resume that reached a
// gateway instance other than the one holding the stream; its metadata
// "instance_address" names the holder.
const reasonWrongInstance = "RESUME_WRONG_INSTANCE"

// reasonDraining is the ErrorInfo reason with which a draining instance refuses
// a new stream that reached it on a connection it is closing.
const reasonDraining = "DRAINING"

// TargetHeader is sent with every stream: "call:<id>" or "conference:<id>". A
// proxy that hashes on it (deploy/nginx, deploy/haproxy) sends every stream of
// a call, and its resumes, to one instance, so that per-call limits hold across
// instances and a resume needs no second hop.
const TargetHeader = "x-mediastream-target"

// withTarget adds TargetHeader for config's call or conference to ctx.
func withTarget(ctx context.Context, config *pb.StreamConfig) context.Context {
	switch {
	case config.GetCallId() != "":
		return metadata.AppendToOutgoingContext(ctx, TargetHeader, "call:"+config.GetCallId())
	case config.GetConferenceId() != "":
		return metadata.AppendToOutgoingContext(ctx, TargetHeader, "conference:"+config.GetConferenceId())
	}
	return ctx
}

// DefaultOpenRetries is how many times a stream refused before it started is
// opened again, unless WithOpenRetries says otherwise.
const DefaultOpenRetries = 3

const (
	openRetryBackoff = 50 * time.Millisecond // the first pause; it doubles
	openRetryConnect = 2 * time.Second       // the wait for the connection, at most
)

// RefusedBeforeStart reports whether err, from opening a stream, means the
// stream never started, so that opening it again is safe: Unavailable with the
// reason DRAINING (a draining instance took it on a connection it is closing)
// or with no reason at all (nothing answered: connection refused or reset, a
// proxy with no server to send it to). An Unavailable the gateway gave a
// reason for (ASTERISK_UNAVAILABLE) is an answer, not a refusal.
func RefusedBeforeStart(err error) bool {
	var e *RPCError
	return errors.As(err, &e) && e.Code == codes.Unavailable && (e.Reason == "" || e.Reason == reasonDraining)
}

// Client is a connection to the gateway. It is safe for concurrent use.
//
// Behind a load balancer, a resumable stream lives on one gateway instance,
// which the server names in StreamInfo.InstanceAddress. A stream opened with
// a Resume goes to Resume.InstanceAddress when it is set and differs from the
// client's own target: the client dials that instance with the same options
// (TLS, token, ...) and keeps the connection for later resumes until Close.
// When a resume reaches the wrong instance anyway (NotFound,
// RESUME_WRONG_INSTANCE, with the holder's address in the metadata), the
// client tries once more at the instance the server names, if the application
// allows that address (WithAllowedInstances, AllowInstances): a forged resume
// token can make a server name any address, and the client would send its
// credentials there. Otherwise the refusal is returned. Other streams and
// ExternalMedia always use the client's own target.
type Client struct {
	conn     *grpc.ClientConn // nil when the caller owns the connection
	media    pb.MediaStreamServiceClient
	external pb.ExternalMediaServiceClient

	target    string            // the own target: "" when unknown
	dialOpts  []grpc.DialOption // how to dial an instance; nil: instances are not dialled
	mu        sync.Mutex        // guards instances and closed
	instances map[string]*grpc.ClientConn
	closed    bool
	allowed   map[string]bool // where a RESUME_WRONG_INSTANCE may send a resume

	own         *grpc.ClientConn // the own connection, when it is a *grpc.ClientConn
	openRetries int
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	grpc      []grpc.DialOption
	noWaiting bool
	allowed   []string
	client    []ClientOption
}

// WithAllowedInstances names the gateway instances (host:port) a
// RESUME_WRONG_INSTANCE refusal may send a resume to; see AllowInstances.
func WithAllowedInstances(addresses ...string) DialOption {
	return func(o *dialOptions) { o.allowed = append(o.allowed, addresses...) }
}

// WithClientOptions applies ClientOptions (WithOpenRetries) to the Client Dial makes.
func WithClientOptions(opts ...ClientOption) DialOption {
	return func(o *dialOptions) { o.client = append(o.client, opts...) }
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
	// Instances are dialled by address; over TLS the certificate names the
	// service dialled here, so the authority (and TLS server name) stays target's.
	// The caller's own options come after and win.
	instanceOpts := append([]grpc.DialOption{grpc.WithAuthority(authorityOf(target))}, o.grpc...)
	clientOpts := append([]ClientOption{WithInstanceDialOptions(instanceOpts...), AllowInstances(o.allowed...)}, o.client...)
	c := NewClient(conn, clientOpts...)
	c.conn, c.target = conn, target
	return c, nil
}

// ClientOption configures NewClient.
type ClientOption func(*Client)

// WithInstanceDialOptions lets a Client made by NewClient dial single gateway
// instances (a resume's InstanceAddress, behind a load balancer) with
// grpc.NewClient(address, opts...), after the default (plaintext)
// credentials: give it the credentials and options conn was made with.
// Without it, such a Client sends every stream on conn.
func WithInstanceDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(c *Client) {
		c.dialOpts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	}
}

// AllowInstances names the gateway instances (host:port) a RESUME_WRONG_INSTANCE
// refusal may send a resume to. The instance a Resume names (InstanceAddress,
// which Stream.ResumeFrom copies from the server's StreamInfo) is tried first
// anyway; a refusal naming any address not allowed here is returned, not
// followed, so that a forged token cannot steer the client's credentials.
func AllowInstances(addresses ...string) ClientOption {
	return func(c *Client) {
		if c.allowed == nil {
			c.allowed = map[string]bool{}
		}
		for _, a := range addresses {
			c.allowed[a] = true
		}
	}
}

// WithOpenRetries sets how many times a stream refused before it started (see
// RefusedBeforeStart) is opened again, each after a pause that doubles from
// 50 ms and a wait of at most 2 s for the connection to be ready again: a
// draining instance closes its listener and sends GOAWAY, so the next attempt
// goes out on a new connection, which a proxy or a Kubernetes Service sends to
// another instance. Default DefaultOpenRetries; 0: never.
func WithOpenRetries(n int) ClientOption {
	return func(c *Client) { c.openRetries = max(n, 0) }
}

// NewClient makes a Client on a connection the caller owns (Close leaves it
// open). If conn is a *grpc.ClientConn, its target counts as the client's own.
func NewClient(conn grpc.ClientConnInterface, opts ...ClientOption) *Client {
	c := &Client{media: pb.NewMediaStreamServiceClient(conn), external: pb.NewExternalMediaServiceClient(conn),
		openRetries: DefaultOpenRetries}
	if cc, ok := conn.(*grpc.ClientConn); ok {
		c.target, c.own = cc.Target(), cc
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Close closes the connection if Dial opened it, and the connections the
// client opened to single gateway instances for resumes.
func (c *Client) Close() error {
	c.mu.Lock()
	instances := c.instances
	c.instances, c.closed = nil, true
	c.mu.Unlock()
	var errs []error
	for _, conn := range instances {
		errs = append(errs, conn.Close())
	}
	if c.conn != nil {
		errs = append(errs, c.conn.Close())
	}
	return errors.Join(errs...)
}

// mediaAt returns the MediaStreamService of the gateway instance at address:
// the client's own connection when address is empty or the own target (or
// when the client cannot dial instances), otherwise a connection of its own,
// dialled on first use and kept until Close.
func (c *Client) mediaAt(address string) (pb.MediaStreamServiceClient, error) {
	if address == "" || address == c.target || c.dialOpts == nil {
		return c.media, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, newRPCError(status.New(codes.Canceled, "mediastream: the client is closed"))
	}
	conn := c.instances[address]
	if conn == nil {
		var err error
		if conn, err = grpc.NewClient(address, c.dialOpts...); err != nil {
			return nil, fmt.Errorf("mediastream: dial instance %s: %w", address, err)
		}
		if c.instances == nil {
			c.instances = map[string]*grpc.ClientConn{}
		}
		c.instances[address] = conn
	}
	return pb.NewMediaStreamServiceClient(conn), nil
}

// open runs open on the instance a stream belongs on: the client's own target
// for a new stream; for a resume, resume.InstanceAddress, and once more at the
// instance a RESUME_WRONG_INSTANCE refusal names, if it is allowed.
func (c *Client) open(ctx context.Context, resume *Resume, open func(pb.MediaStreamServiceClient) error) error {
	if resume == nil {
		return c.retrying(ctx, "", func() error { return open(c.media) })
	}
	media, err := c.mediaAt(resume.InstanceAddress)
	if err != nil {
		return err
	}
	if media != c.media {
		// Once at the instance: when it cannot be reached from here (NAT, a client
		// outside the cluster), through the client's own target, which a proxy
		// routes by call (TargetHeader) to the holder, or reaches an instance that
		// names it (RESUME_WRONG_INSTANCE).
		if err = open(media); RefusedBeforeStart(err) {
			err = c.retrying(ctx, "", func() error { return open(c.media) })
		}
	} else {
		err = c.retrying(ctx, resume.InstanceAddress, func() error { return open(media) })
	}
	var rpcErr *RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.NotFound || rpcErr.Reason != reasonWrongInstance {
		return err
	}
	holder := rpcErr.Metadata["instance_address"]
	if holder == "" || holder == resume.InstanceAddress || !c.allowed[holder] {
		return err
	}
	// Behind a load balancer: the resume reached another instance, which
	// named the one holding the stream. Go there directly.
	if media, err = c.mediaAt(holder); err != nil {
		return err
	}
	return c.retrying(ctx, holder, func() error { return open(media) })
}

// retrying runs open, and again (up to openRetries times) while it fails with
// a refusal before the stream started, waiting for the connection to address
// ("" : the own one) to be ready before each new attempt.
func (c *Client) retrying(ctx context.Context, address string, open func() error) error {
	for attempt := 0; ; attempt++ {
		err := open()
		if err == nil || attempt >= c.openRetries || !RefusedBeforeStart(err) {
			return err
		}
		select {
		case <-time.After(openRetryBackoff << attempt):
		case <-ctx.Done():
			return err
		}
		c.waitReady(ctx, address)
	}
}

// waitReady waits, at most openRetryConnect, until the connection to address
// is ready: past gRPC's own reconnect backoff after a refused connection.
func (c *Client) waitReady(ctx context.Context, address string) {
	conn := c.own
	if address != "" && address != c.target {
		c.mu.Lock()
		if in := c.instances[address]; in != nil {
			conn = in
		}
		c.mu.Unlock()
	}
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, openRetryConnect)
	defer cancel()
	conn.Connect()
	for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
	}
}

// Listen opens a listen-only stream of a call or conference and waits until
// the server confirms it. The stream lives until ctx is done, Close is called,
// or the server ends it. With cfg.Resume, the stream is opened on the gateway
// instance that holds it (see Client).
func (c *Client) Listen(ctx context.Context, cfg Config, opts ...grpc.CallOption) (*Stream, error) {
	config, err := cfg.proto()
	if err != nil {
		return nil, err
	}
	ctx, cancelAll := context.WithCancel(ctx)
	var s *Stream
	err = c.open(ctx, cfg.Resume, func(media pb.MediaStreamServiceClient) (err error) {
		s, err = listen(ctx, media, config, opts)
		return err
	})
	if err != nil {
		cancelAll()
		return nil, err
	}
	s.adopt(cancelAll)
	if cfg.AutoResume {
		s.reopen = func(resume *Resume) error {
			var next *Stream
			err := c.open(ctx, resume, func(media pb.MediaStreamServiceClient) (err error) {
				next, err = listen(ctx, media, withResume(config, resume), opts)
				return err
			})
			if err != nil {
				return err
			}
			s.replace(next)
			return nil
		}
	}
	return s, nil
}

// withResume is a copy of config that resumes the stream resume names.
func withResume(config *pb.StreamConfig, resume *Resume) *pb.StreamConfig {
	out := proto.Clone(config).(*pb.StreamConfig)
	out.Resume = &pb.ResumeRequest{Token: resume.Token, LastSequenceNumber: resume.LastSequenceNumber}
	return out
}

func listen(ctx context.Context, media pb.MediaStreamServiceClient, config *pb.StreamConfig, opts []grpc.CallOption) (*Stream, error) {
	ctx, cancel := context.WithCancel(withTarget(ctx, config))
	rpc, err := media.ListenMedia(ctx, &pb.ListenMediaRequest{Config: config}, opts...)
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
// With cfg.Resume, the stream is opened on the gateway instance that holds it
// (see Client).
func (c *Client) Stream(ctx context.Context, cfg Config, opts ...grpc.CallOption) (*DuplexStream, error) {
	config, err := cfg.proto()
	if err != nil {
		return nil, err
	}
	ctx, cancelAll := context.WithCancel(ctx)
	var d *DuplexStream
	err = c.open(ctx, cfg.Resume, func(media pb.MediaStreamServiceClient) (err error) {
		d, err = stream(ctx, media, config, opts)
		return err
	})
	if err != nil {
		cancelAll()
		return nil, err
	}
	d.adopt(cancelAll)
	if cfg.AutoResume {
		d.reopen = func(resume *Resume) error {
			var next *DuplexStream
			err := c.open(ctx, resume, func(media pb.MediaStreamServiceClient) (err error) {
				next, err = stream(ctx, media, withResume(config, resume), opts)
				return err
			})
			if err != nil {
				return err
			}
			d.sendMu.Lock()
			d.rpc, d.media = next.rpc, next.media
			d.sendMu.Unlock()
			d.replace(&next.Stream)
			return nil
		}
	}
	return d, nil
}

func stream(ctx context.Context, media pb.MediaStreamServiceClient, config *pb.StreamConfig, opts []grpc.CallOption) (*DuplexStream, error) {
	ctx, cancel := context.WithCancel(withTarget(ctx, config))
	rpc, err := media.StreamMedia(ctx, opts...)
	if err != nil {
		cancel()
		return nil, AsRPCError(err)
	}
	d := &DuplexStream{rpc: rpc, media: media, opts: opts, closeGrace: DefaultCloseGrace}
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
		Resumable:     cfg.Resumable || cfg.AutoResume,
	}
	switch {
	case cfg.CallID != "" && cfg.ConferenceID != "":
		return nil, &ConfigError{Reason: ReasonBothTargets, Field: "config.target", Message: "set only one of CallID and ConferenceID"}
	case cfg.CallID != "":
		out.Target = &pb.StreamConfig_CallId{CallId: cfg.CallID}
	case cfg.ConferenceID != "":
		out.Target = &pb.StreamConfig_ConferenceId{ConferenceId: cfg.ConferenceID}
	default:
		// The server would refuse it with the same reason; no round trip.
		return nil, &ConfigError{Reason: ReasonMissingTarget, Field: "config.target", Message: "set CallID or ConferenceID"}
	}
	if cfg.Resume != nil {
		out.Resume = &pb.ResumeRequest{Token: cfg.Resume.Token, LastSequenceNumber: cfg.Resume.LastSequenceNumber}
	}
	return out, nil
}

// authorityOf is the host:port part of a gRPC target ("dns:///gw:50051" → "gw:50051").
func authorityOf(target string) string {
	if i := strings.Index(target, ":///"); i >= 0 {
		return target[i+4:]
	}
	return target
}
