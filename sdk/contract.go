package sdk

import (
	"context"
	"net"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/hackarena/hackarena/sdk/engine"
)

// ProtocolVersion is the version of the judge ⇄ plugin contract. Change it
// (and record why in sdk/proto/pluginv1/plugin.proto) whenever the contract
// changes, so old plugins get a clear error instead of a hang.
//
// 2 added the Engine. The judge still speaks 1 (SupportedVersions), so a
// plugin built before it keeps working.
const ProtocolVersion = 2

// SupportedVersions are the protocol versions the judge accepts.
var SupportedVersions = []int{1, 2}

// Version is the SDK release a plugin reports in Describe.
const Version = "0.1.0"

// PluginName is the key of the model plugin in the plugin map.
const PluginName = "model"

// Handshake is shared by judge and plugins. The magic cookie is not a
// security measure; it only stops a user from running a plugin binary by
// hand and wondering why it prints a cryptic line.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "HACKARENA_PLUGIN",
	MagicCookieValue: "5e1c6a0e-hackarena-model",
}

// EngineUser is implemented by a model that runs a network on the judge's
// Engine. UseEngine is called once, before the first Predict, within
// Describe's deadline: load the network there.
type EngineUser interface {
	UseEngine(ctx context.Context, e *engine.Client) error
}

// Model is what a participant implements.
type Model interface {
	// Describe names the model.
	Describe(ctx context.Context) (Info, error)
	// Predict answers one batch; it must return one prediction per example.
	Predict(ctx context.Context, batch Batch) (Predictions, error)
}

// PluginSet is the plugin map a plugin serves m with.
func PluginSet(m Model) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: m}}
}

// HostPluginSets are the judge's plugin maps for every supported version.
// serveEngine, when not nil, takes the listener of the Engine connection
// this run may use; nil offers none.
func HostPluginSets(serveEngine func(net.Listener)) map[int]plugin.PluginSet {
	sets := map[int]plugin.PluginSet{}
	for _, v := range SupportedVersions {
		sets[v] = plugin.PluginSet{PluginName: &GRPCPlugin{ServeEngine: serveEngine}}
	}
	return sets
}

// Serve runs m as a go-plugin server; a plugin's main calls it and nothing
// else. It returns when the judge closes the connection.
func Serve(m Model) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(m),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, ServerOptions()...)...)
		},
	})
}

// MaxMessageBytes bounds one gRPC message between judge and plugin, both
// ways: a batch, or the predictions for one.
const MaxMessageBytes = 64 << 20

// windowBytes is the HTTP/2 flow-control window of the judge's and
// plugin's connections. gRPC starts at 64 KiB and grows it by estimate; a
// 1,000-image batch (784 KiB) then waits on several window updates, each
// a round trip between two processes.
const windowBytes = 4 << 20

// ServerOptions are those of every gRPC server between judge, plugin and
// Engine: flow-control windows for whole batches, messages bounded by
// MaxMessageBytes (a batch of long reviews can pass gRPC's 4 MiB default),
// and the wire codec (wire.go).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes),
		grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.ForceServerCodecV2(wireCodec{})}
}

// DialOptions are those of every gRPC client between judge, plugin and
// Engine, as ServerOptions.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes),
			grpc.ForceCodecV2(wireCodec{}))}
}
