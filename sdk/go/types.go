package mediastream

import (
	"time"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// AudioFormat is the sample encoding of every chunk, in both directions.
type AudioFormat = pb.AudioFormat

// Audio formats. The zero value lets the server choose (mu-law).
const (
	FormatUnspecified = pb.AudioFormat_AUDIO_FORMAT_UNSPECIFIED
	// FormatULAW is G.711 mu-law, 8 kHz: 160 bytes per 20 ms.
	FormatULAW = pb.AudioFormat_AUDIO_FORMAT_ULAW
	// FormatSLIN is 16-bit signed linear little-endian, 8 kHz: 320 bytes per 20 ms.
	FormatSLIN = pb.AudioFormat_AUDIO_FORMAT_SLIN
	// FormatSLIN16 is 16-bit signed linear little-endian, 16 kHz: 640 bytes per 20 ms.
	FormatSLIN16 = pb.AudioFormat_AUDIO_FORMAT_SLIN16
)

// Direction says whose audio a call stream hears, and who hears the client.
type Direction = pb.Direction

// Directions. The zero value means DirectionBoth.
const (
	DirectionUnspecified = pb.Direction_DIRECTION_UNSPECIFIED
	// DirectionBoth hears both sides of the call.
	DirectionBoth = pb.Direction_DIRECTION_BOTH
	// DirectionIn hears only what the call's channel sends (the caller's voice).
	DirectionIn = pb.Direction_DIRECTION_IN
	// DirectionOut hears only what the call's channel is sent.
	DirectionOut = pb.Direction_DIRECTION_OUT
)

// Encapsulation is the wire form of each chunk's bytes.
type Encapsulation = pb.Encapsulation

// Encapsulations. The zero value means bare samples.
const (
	EncapsulationUnspecified = pb.Encapsulation_ENCAPSULATION_UNSPECIFIED
	// EncapsulationRTP puts a 12-byte RTP header before the samples.
	EncapsulationRTP = pb.Encapsulation_ENCAPSULATION_RTP
	// EncapsulationSLN is bare samples.
	EncapsulationSLN = pb.Encapsulation_ENCAPSULATION_SLN
	// EncapsulationAudioSocket wraps the samples in one AudioSocket message.
	EncapsulationAudioSocket = pb.Encapsulation_ENCAPSULATION_AUDIOSOCKET
)

// Transport is how the gateway takes the audio from Asterisk.
type Transport = pb.MediaTransport

// Transports. The zero value is the gateway's configured default.
const (
	TransportUnspecified = pb.MediaTransport_MEDIA_TRANSPORT_UNSPECIFIED
	TransportRTP         = pb.MediaTransport_MEDIA_TRANSPORT_RTP
	TransportAudioSocket = pb.MediaTransport_MEDIA_TRANSPORT_AUDIOSOCKET
	TransportWebSocket   = pb.MediaTransport_MEDIA_TRANSPORT_WEBSOCKET
)

// StopReason says why a stream ended.
type StopReason = pb.StopReason

// Stop reasons.
const (
	StopReasonUnspecified     = pb.StopReason_STOP_REASON_UNSPECIFIED
	StopReasonClientDone      = pb.StopReason_STOP_REASON_CLIENT_DONE
	StopReasonCallHangup      = pb.StopReason_STOP_REASON_CALL_HANGUP
	StopReasonConferenceEnded = pb.StopReason_STOP_REASON_CONFERENCE_ENDED
	StopReasonServerShutdown  = pb.StopReason_STOP_REASON_SERVER_SHUTDOWN
	StopReasonAsteriskFailure = pb.StopReason_STOP_REASON_ASTERISK_FAILURE
	StopReasonClientHangup    = pb.StopReason_STOP_REASON_CLIENT_HANGUP
)

// FlowState says whether the client may send more audio.
type FlowState = pb.FlowState

// Flow states.
const (
	FlowPause  = pb.FlowState_FLOW_STATE_PAUSE
	FlowResume = pb.FlowState_FLOW_STATE_RESUME
)

// Config names what to stream and how. Set exactly one of CallID and
// ConferenceID; zero values of the other fields select the server's defaults.
type Config struct {
	// CallID is the call to stream (by default, the Asterisk channel ID).
	CallID string
	// ConferenceID is the conference to stream (by default, the Asterisk bridge ID).
	ConferenceID string
	// Format is the sample format in both directions (default mu-law).
	Format AudioFormat
	// Direction is whose audio a call stream hears (default both).
	Direction Direction
	// ChunkMS is the duration of each chunk: 0 (meaning 20) or a multiple of 20 up to 200.
	ChunkMS uint32
	// Encapsulation is the wire form of each chunk (default bare samples).
	Encapsulation Encapsulation
	// Transport is how the gateway takes the audio from Asterisk (default: the gateway's).
	Transport Transport
	// Resumable keeps the stream for the server's resume grace period when
	// its RPC ends without Stopped (a dropped connection or a cancel), so
	// that a new stream with Resume can take it over.
	Resumable bool
	// Resume, if set, takes over a stream whose connection dropped. The
	// other fields must match the original stream's.
	Resume *Resume
	// AutoResume opens the stream resumable and, when its connection drops
	// (Unavailable, Internal or Unknown without a final reason such as
	// ASTERISK_FAILURE or DRAINING), resumes it by itself: with its resume
	// token and the last sequence number received, at the instance the
	// server advertised (then through the client's target, and at an
	// instance a RESUME_WRONG_INSTANCE names if AllowInstances allows it),
	// with the client's open retries (WithOpenRetries). Recv goes on as if
	// nothing happened: the audio's sequence numbers stay contiguous. It is
	// bounded by the server's resume grace: past it the resume is refused
	// and Recv returns that error. Sends made while the connection is down
	// fail; those after the resume go to the resumed stream. The Python
	// (auto_resume) and TypeScript (autoResume) SDKs do the same.
	AutoResume bool
}

// Resume continues a stream after its connection dropped. Stream.ResumeFrom
// fills it in.
type Resume struct {
	// Token is StreamInfo.ResumeToken of the stream to continue.
	Token string
	// LastSequenceNumber is the sequence number of the last audio chunk
	// received, or nil if none was.
	LastSequenceNumber *uint64
	// InstanceAddress is StreamInfo.InstanceAddress of the stream to
	// continue: the host:port of the gateway instance holding it. When set
	// and different from the client's own target, the resume is sent there
	// directly instead of through the load balancer. Empty: the client's own
	// target (which redirects a resume that reaches the wrong instance).
	InstanceAddress string
}

// StreamInfo is what the server confirmed when the stream started.
type StreamInfo struct {
	// StreamID is the server's ID for the stream.
	StreamID string
	// Format is the sample format of every chunk.
	Format AudioFormat
	// SampleRateHz is 8000 or 16000.
	SampleRateHz uint32
	// FrameBytes is the number of sample bytes in one 20 ms frame.
	FrameBytes uint32
	// ChunkMS is the duration of each chunk in milliseconds.
	ChunkMS uint32
	// Encapsulation is the wire form of each chunk.
	Encapsulation Encapsulation
	// Transport is what the gateway uses towards Asterisk.
	Transport Transport
	// ResumeToken resumes this stream after a dropped connection.
	ResumeToken string
	// Resumed reports whether this stream continues an earlier connection.
	Resumed bool
	// BufferHighChunks is how many client chunks the server buffers before
	// it sends a FlowControl pause.
	BufferHighChunks uint32
	// InstanceAddress is the host:port on which the gateway instance holding
	// the stream can be dialled directly, bypassing a load balancer; a
	// resume must reach that instance. Empty when the instance advertises
	// none (a single gateway).
	InstanceAddress string
}

// ChunkBytes is the number of sample bytes in one chunk (without encapsulation).
func (i StreamInfo) ChunkBytes() int {
	return int(i.FrameBytes) * int(i.ChunkMS) / 20
}

// Event is one message the server sends on a stream: AudioChunk, DTMFReceived,
// MarkPlayed, Cleared, FlowControl or Stopped.
type Event interface {
	isEvent()
}

// AudioChunk is one chunk of audio from the call or conference.
type AudioChunk struct {
	// Data is ChunkMS of samples in the stream's format and encapsulation.
	Data []byte
	// SequenceNumber counts chunks from 0.
	SequenceNumber uint64
	// Timestamp is the media time of the first sample, in samples from the
	// start of the stream.
	Timestamp uint64
}

// DTMFReceived reports a digit the call sent (DtmfReceived in the protocol
// and the Python and TypeScript SDKs).
type DTMFReceived struct {
	// Digit is 0-9, *, #, or A-D.
	Digit string
	// Duration is how long the digit lasted (0 if unknown).
	Duration time.Duration
}

// DTMF is the name DTMFReceived had before.
//
// Deprecated: use DTMFReceived (the same type).
type DTMF = DTMFReceived

// MarkPlayed reports that the audio sent before a mark has been played.
type MarkPlayed struct {
	// Name is the mark's name.
	Name string
	// Position is how much client audio had been played at the mark.
	Position time.Duration
}

// Cleared reports the effect of Clear.
type Cleared struct {
	// Position is the play position where playback was cut.
	Position time.Duration
	// DroppedMarks names the marks dropped with the audio, in order.
	DroppedMarks []string
}

// FlowControl tells the client to hold off (FlowPause) or resume sending audio.
type FlowControl struct {
	// State is FlowPause or FlowResume.
	State FlowState
	// Buffered is how much audio was buffered when the state changed.
	Buffered time.Duration
}

// Stopped is the last event of a stream.
type Stopped struct {
	// Reason says why the stream ended.
	Reason StopReason
	// Detail is a human-readable explanation.
	Detail string
}

func (AudioChunk) isEvent()   {}
func (DTMFReceived) isEvent() {}
func (MarkPlayed) isEvent()   {}
func (Cleared) isEvent()      {}
func (FlowControl) isEvent()  {}
func (Stopped) isEvent()      {}
