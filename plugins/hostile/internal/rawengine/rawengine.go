// Package rawengine is what the hostile raw plugins share: a plugin
// served with go-plugin directly, not through the SDK, whose first Predict
// attacks the judge's Engine with the generated client or the raw socket,
// the way a participant who skips our SDK's checks would.
package rawengine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/hackarena/hackarena/plugins/hostile/internal/attack"
	"github.com/hackarena/hackarena/sdk"
	"github.com/hackarena/hackarena/sdk/proto/enginev1"
	"github.com/hackarena/hackarena/sdk/proto/pluginv1"
)

// Engine is the judge's Engine as this run was offered it.
type Engine struct {
	broker *plugin.GRPCBroker
	id     uint32
}

// Client dials the Engine through go-plugin's broker and returns the
// generated client, with no limit on what it sends.
func (e *Engine) Client() (enginev1.EngineClient, error) {
	if e.id == 0 {
		return nil, errors.New("the judge offered no engine")
	}
	conn, err := e.broker.DialWithOptions(e.id, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(1<<30), grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return nil, err
	}
	return enginev1.NewEngineClient(conn), nil
}

// SocketPath finds the Engine's socket in this plugin's socket directory:
// the one socket there that this process's network namespace did not
// bind (the plugin's own go-plugin socket is listed in /proc/net/unix).
func (e *Engine) SocketPath() (string, error) {
	dir := os.Getenv("PLUGIN_UNIX_SOCKET_DIR")
	own, _ := os.ReadFile("/proc/self/net/unix")
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type()&os.ModeSocket != 0 && !strings.Contains(string(own), path) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil || len(found) == 0 {
		return "", fmt.Errorf("no engine socket in %s (%v)", dir, err)
	}
	return found[0], nil
}

// Attack runs once, on the first Predict; an error it returns is the
// plugin's answer to that Predict.
type Attack func(ctx context.Context, e *Engine) error

// Serve runs the plugin.
func Serve(name string, a Attack) { ServeWith(name, a, Options{}) }

// Options change how the plugin is served.
type Options struct {
	// Reply, when set, is the plugin's answer to every Predict after the
	// attack, as the raw message.
	Reply func(req *pluginv1.PredictRequest) *pluginv1.PredictResponse
	// Server adds options to the plugin's gRPC server (interceptors that
	// misuse go-plugin's own streams, say).
	Server []grpc.ServerOption
}

// ServeWith runs the plugin with options.
func ServeWith(name string, a Attack, o Options) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &rawPlugin{name: name, attack: a, reply: o.Reply}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(sdk.MaxMessageBytes), grpc.MaxSendMsgSize(sdk.MaxMessageBytes))
			return grpc.NewServer(append(opts, o.Server...)...)
		},
	})
}

type rawPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	name   string
	attack Attack
	reply  func(*pluginv1.PredictRequest) *pluginv1.PredictResponse
}

func (p *rawPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterModelServer(s, &model{name: p.name, attack: p.attack, reply: p.reply, engine: &Engine{broker: broker}})
	return nil
}

func (p *rawPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, errors.New("a hostile plugin has no client side")
}

type model struct {
	pluginv1.UnimplementedModelServer
	name   string
	attack Attack
	reply  func(*pluginv1.PredictRequest) *pluginv1.PredictResponse
	engine *Engine
	once   sync.Once
	err    error
}

func (m *model) Describe(_ context.Context, req *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	m.engine.id = req.GetEngineBrokerId()
	return &pluginv1.DescribeResponse{Name: m.name, SdkVersion: sdk.Version}, nil
}

func (m *model) Predict(ctx context.Context, req *pluginv1.PredictRequest) (*pluginv1.PredictResponse, error) {
	m.once.Do(func() {
		m.err = m.attack(ctx, m.engine)
		attack.Report("attack_done", true)
	})
	if m.err != nil {
		// go-plugin forwards stderr asynchronously; let the observations
		// reach the judge before it ends the run on this error.
		time.Sleep(300 * time.Millisecond)
		return nil, m.err
	}
	if m.reply != nil {
		return m.reply(req), nil
	}
	return &pluginv1.PredictResponse{Classes: make([]int64, req.GetBatch().GetSize())}, nil
}
