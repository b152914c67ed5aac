package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/heraldhq/herald/commands"
	"github.com/heraldhq/herald/domain"
	"github.com/heraldhq/herald/projections/live"
)

// TopicWorkspaceEvent is the topic of a workspace event's live update
// (seed 003's socket event).
const TopicWorkspaceEvent = "notification:new"

// workspaceEvents records seed 003's workspace events (the AMQP ingress's
// Handler) and pushes the live update of those that ask for one, once
// recorded, to every instance's sessions. It is safe for concurrent use.
type workspaceEvents struct {
	commands *commands.Commands
	sockets  *live.Sockets
	logger   *slog.Logger
}

// HandleWorkspaceEvent implements amqp.Handler. The live update is not
// stored: should it fail to go out, the event stays recorded and
// acknowledged (a redelivery would find it a duplicate and push nothing),
// and the failure is logged.
func (w *workspaceEvents) HandleWorkspaceEvent(ctx context.Context, ev domain.WorkspaceEvent, key string, src domain.Source) error {
	res, err := w.commands.HandleWorkspaceEvent(ctx, ev, key, src)
	if err != nil || res.Socket == nil {
		return err
	}
	pushes, err := socketPushes(res.Socket)
	if err != nil {
		w.logger.ErrorContext(ctx, "a workspace event's live update cannot be encoded", "event", res.ID, "type", ev.Type, "error", err)
		return nil
	}
	for _, push := range pushes {
		if _, err := w.sockets.Publish(ctx, push); err != nil {
			w.logger.WarnContext(ctx, "a workspace event's live update did not go out", "event", res.ID, "type", ev.Type, "error", err)
			return nil
		}
	}
	return nil
}

// socketPushes are the pushes of a live update: one to the workspace's
// room, narrowed to the receivers when it names some; without a workspace,
// one to each receiver, or to the whole tenant. A payload too large for
// a push is left out ("payloadOmitted": true): the client fetches what it
// needs.
func socketPushes(u *commands.SocketUpdate) ([]live.Ephemeral, error) {
	data, err := json.Marshal(u.Data)
	if err != nil {
		return nil, fmt.Errorf("encode the live update: %w", err)
	}
	if len(data) > live.MaxEphemeralDataBytes {
		slim := make(map[string]any, len(u.Data)+1)
		for k, v := range u.Data {
			slim[k] = v
		}
		delete(slim, "payload")
		slim["payloadOmitted"] = true
		if data, err = json.Marshal(slim); err != nil {
			return nil, fmt.Errorf("encode the live update: %w", err)
		}
	}
	one := func(t live.Target) live.Ephemeral {
		return live.Ephemeral{Target: t, Topic: TopicWorkspaceEvent, Data: data}
	}
	switch {
	case u.WorkspaceID != "":
		return []live.Ephemeral{one(live.Target{Tenant: u.Tenant, Kind: live.TargetRoom, ID: live.WorkspaceRoom(u.WorkspaceID), Users: u.Receivers})}, nil
	case len(u.Receivers) == 0:
		return []live.Ephemeral{one(live.Target{Tenant: u.Tenant, Kind: live.TargetBroadcast})}, nil
	}
	out := make([]live.Ephemeral, len(u.Receivers))
	for i, to := range u.Receivers {
		out[i] = one(live.Target{Tenant: u.Tenant, Kind: live.TargetUser, ID: to})
	}
	return out, nil
}
