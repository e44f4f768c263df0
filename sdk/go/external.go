package mediastream

import (
	"context"
	"time"

	"google.golang.org/grpc"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// ExternalMediaEncapsulation is the wire form Asterisk sends to an external host.
type ExternalMediaEncapsulation = pb.ExternalMediaEncapsulation

// External media encapsulations. The zero value means RTP.
const (
	ExternalMediaRTP         = pb.ExternalMediaEncapsulation_EXTERNAL_MEDIA_ENCAPSULATION_RTP
	ExternalMediaAudioSocket = pb.ExternalMediaEncapsulation_EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET
	ExternalMediaSLN         = pb.ExternalMediaEncapsulation_EXTERNAL_MEDIA_ENCAPSULATION_SLN
)

// ExternalMediaStatus is where an external media is in its life.
type ExternalMediaStatus = pb.ExternalMediaStatus

// External media statuses.
const (
	ExternalMediaRunning     = pb.ExternalMediaStatus_EXTERNAL_MEDIA_STATUS_RUNNING
	ExternalMediaTerminating = pb.ExternalMediaStatus_EXTERNAL_MEDIA_STATUS_TERMINATING
	ExternalMediaTerminated  = pb.ExternalMediaStatus_EXTERNAL_MEDIA_STATUS_TERMINATED
)

// ExternalMediaConfig names whose audio to send where. Set exactly one of
// CallID and ConferenceID.
type ExternalMediaConfig struct {
	// CallID is the call whose audio is sent.
	CallID string
	// ConferenceID is the conference whose audio is sent.
	ConferenceID string
	// ExternalHost is the host:port to send to; the gateway's allow-list must allow it.
	ExternalHost string
	// Encapsulation is the wire form (default RTP).
	Encapsulation ExternalMediaEncapsulation
	// Format is the sample format (AudioSocket always carries 8 kHz slin).
	Format AudioFormat
	// Direction is whose audio of a call is sent.
	Direction Direction
}

// ExternalMedia is one flow of audio from the gateway's Asterisk to an external host.
type ExternalMedia struct {
	// ID is the gateway's ID for it.
	ID string
	// CallID is the call whose audio is sent, if it is a call.
	CallID string
	// ConferenceID is the conference whose audio is sent, if it is a conference.
	ConferenceID string
	// ExternalHost is where the audio goes.
	ExternalHost string
	// Encapsulation is the wire form.
	Encapsulation ExternalMediaEncapsulation
	// Format is the sample format.
	Format AudioFormat
	// Direction is whose audio of a call is sent.
	Direction Direction
	// Status is where it is in its life.
	Status ExternalMediaStatus
	// CreateTime is when it started.
	CreateTime time.Time
	// EndReason says why it ended, once terminated.
	EndReason string
}

// ExternalMediaClient starts and stops audio sent straight from Asterisk to
// external hosts (ExternalMediaService). Get one from Client.ExternalMedia.
type ExternalMediaClient struct {
	rpc pb.ExternalMediaServiceClient
}

// Start starts sending audio to cfg.ExternalHost and returns the running external media.
func (c *ExternalMediaClient) Start(ctx context.Context, cfg ExternalMediaConfig, opts ...grpc.CallOption) (*ExternalMedia, error) {
	req := &pb.StartExternalMediaRequest{
		ExternalHost:  cfg.ExternalHost,
		Encapsulation: cfg.Encapsulation,
		Format:        cfg.Format,
		Direction:     cfg.Direction,
	}
	switch {
	case cfg.CallID != "" && cfg.ConferenceID != "":
		return nil, ErrBothTargets
	case cfg.CallID != "":
		req.Target = &pb.StartExternalMediaRequest_CallId{CallId: cfg.CallID}
	case cfg.ConferenceID != "":
		req.Target = &pb.StartExternalMediaRequest_ConferenceId{ConferenceId: cfg.ConferenceID}
	}
	resp, err := c.rpc.StartExternalMedia(ctx, req, opts...)
	if err != nil {
		return nil, AsRPCError(err)
	}
	return externalMedia(resp.GetExternalMedia()), nil
}

// Stop stops one external media by ID and returns it, terminated.
func (c *ExternalMediaClient) Stop(ctx context.Context, id string, opts ...grpc.CallOption) ([]*ExternalMedia, error) {
	return c.stop(ctx, &pb.StopExternalMediaRequest{Selector: &pb.StopExternalMediaRequest_Id{Id: id}}, opts)
}

// StopCall stops every running external media of a call.
func (c *ExternalMediaClient) StopCall(ctx context.Context, callID string, opts ...grpc.CallOption) ([]*ExternalMedia, error) {
	return c.stop(ctx, &pb.StopExternalMediaRequest{Selector: &pb.StopExternalMediaRequest_CallId{CallId: callID}}, opts)
}

// StopConference stops every running external media of a conference.
func (c *ExternalMediaClient) StopConference(ctx context.Context, conferenceID string, opts ...grpc.CallOption) ([]*ExternalMedia, error) {
	return c.stop(ctx, &pb.StopExternalMediaRequest{Selector: &pb.StopExternalMediaRequest_ConferenceId{ConferenceId: conferenceID}}, opts)
}

func (c *ExternalMediaClient) stop(ctx context.Context, req *pb.StopExternalMediaRequest, opts []grpc.CallOption) ([]*ExternalMedia, error) {
	resp, err := c.rpc.StopExternalMedia(ctx, req, opts...)
	if err != nil {
		return nil, AsRPCError(err)
	}
	return externalMediaList(resp.GetExternalMedia()), nil
}

// Get returns one external media by ID.
func (c *ExternalMediaClient) Get(ctx context.Context, id string, opts ...grpc.CallOption) (*ExternalMedia, error) {
	resp, err := c.rpc.GetExternalMedia(ctx, &pb.GetExternalMediaRequest{Id: id}, opts...)
	if err != nil {
		return nil, AsRPCError(err)
	}
	return externalMedia(resp.GetExternalMedia()), nil
}

// ListFilter selects whose external media List returns; the zero value lists all.
type ListFilter struct {
	// CallID lists the external media of this call.
	CallID string
	// ConferenceID lists the external media of this conference.
	ConferenceID string
}

// List returns external media, newest first. The gateway answers a page at a time
// (at most 1000 each); List follows the pages.
func (c *ExternalMediaClient) List(ctx context.Context, filter ListFilter, opts ...grpc.CallOption) ([]*ExternalMedia, error) {
	req := &pb.ListExternalMediaRequest{}
	switch {
	case filter.CallID != "" && filter.ConferenceID != "":
		return nil, ErrBothTargets
	case filter.CallID != "":
		req.Target = &pb.ListExternalMediaRequest_CallId{CallId: filter.CallID}
	case filter.ConferenceID != "":
		req.Target = &pb.ListExternalMediaRequest_ConferenceId{ConferenceId: filter.ConferenceID}
	}
	out := []*ExternalMedia{}
	for {
		resp, err := c.rpc.ListExternalMedia(ctx, req, opts...)
		if err != nil {
			return nil, AsRPCError(err)
		}
		out = append(out, externalMediaList(resp.GetExternalMedia())...)
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func externalMedia(m *pb.ExternalMedia) *ExternalMedia {
	if m == nil {
		return nil
	}
	out := &ExternalMedia{
		ID:            m.GetId(),
		CallID:        m.GetCallId(),
		ConferenceID:  m.GetConferenceId(),
		ExternalHost:  m.GetExternalHost(),
		Encapsulation: m.GetEncapsulation(),
		Format:        m.GetFormat(),
		Direction:     m.GetDirection(),
		Status:        m.GetStatus(),
		EndReason:     m.GetEndReason(),
	}
	if m.GetCreateTime() != nil {
		out.CreateTime = m.GetCreateTime().AsTime()
	}
	return out
}

func externalMediaList(in []*pb.ExternalMedia) []*ExternalMedia {
	out := make([]*ExternalMedia, 0, len(in))
	for _, m := range in {
		out = append(out, externalMedia(m))
	}
	return out
}
