// Command wrong-version is a model built against a future contract: it
// offers only protocol version ProtocolVersion+1.
package main

import (
	"context"

	"github.com/hackarena/hackarena/sdk"
	"github.com/hashicorp/go-plugin"
)

type model struct{}

func (model) Describe(context.Context) (sdk.Info, error) { return sdk.Info{Name: "wrong-version"}, nil }

func (model) Predict(_ context.Context, b sdk.Batch) (sdk.Predictions, error) {
	return sdk.Predictions{Classes: make([]int, b.Size)}, nil
}

func main() {
	handshake := sdk.Handshake
	handshake.ProtocolVersion = sdk.ProtocolVersion + 1
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         sdk.PluginSet(model{}),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
