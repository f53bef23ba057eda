package api

import (
	"context"
	"sync"
	"time"

	"github.com/hackarena/hackarena/platform/store"
)

// Throttles bound guessing and mass registration; their counts live in
// Redis, shared by every API process.
type Throttles struct {
	// LoginPerTeam counts failed logins per user name (the team's, for a
	// team of one).
	LoginPerTeam store.Throttle
	// LoginPerAddress counts failed logins per client address.
	LoginPerAddress store.Throttle
	// RegisterPerAddress counts registrations per client address.
	RegisterPerAddress store.Throttle
}

// Default throttles: a team name locks after 10 failed logins within 15
// minutes, an address after 300 (a room behind one NAT shares it), for 15
// minutes after the last; an address may register 100 teams per 10
// minutes.
const (
	DefaultLoginLimit        = 10
	DefaultLoginAddressLimit = 300
	DefaultLoginLockout      = 15 * time.Minute
	DefaultRegisterLimit     = 100
	DefaultRegisterWindow    = 10 * time.Minute
)

// throttles is s.Throttles with the defaults filled in.
func (s *Server) throttles() Throttles {
	t := s.Throttles
	fill := func(th *store.Throttle, kind string, limit int, window time.Duration) {
		th.Kind = kind
		if th.Limit <= 0 {
			th.Limit = limit
		}
		if th.Window <= 0 {
			th.Window = window
		}
	}
	fill(&t.LoginPerTeam, "login:team", DefaultLoginLimit, DefaultLoginLockout)
	fill(&t.LoginPerAddress, "login:addr", DefaultLoginAddressLimit, t.LoginPerTeam.Window)
	fill(&t.RegisterPerAddress, "register:addr", DefaultRegisterLimit, DefaultRegisterWindow)
	return t
}

// standingTTL is how long a user's standing (token generation, team,
// lock) is trusted without asking Redis: a token revoked on another API
// process still works for at most this long; one revoked on this process
// stops at once (set).
const standingTTL = 2 * time.Second

// standingCache keeps users' standings briefly, so checking a token costs
// Redis one read per user every standingTTL.
type standingCache struct {
	mu      sync.Mutex
	entries map[string]standingEntry
}

type standingEntry struct {
	standing store.Standing
	fetched  time.Time
}

func (g *standingCache) get(ctx context.Context, st *store.Store, userID string) (store.Standing, error) {
	g.mu.Lock()
	e, ok := g.entries[userID]
	g.mu.Unlock()
	if ok && time.Since(e.fetched) < standingTTL {
		return e.standing, nil
	}
	standing, err := st.UserStanding(ctx, userID)
	if err != nil {
		return store.Standing{}, err
	}
	g.set(userID, standing)
	return standing, nil
}

// forget drops a user's standing, so the next token check reads Redis.
func (g *standingCache) forget(userID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.entries, userID)
}

func (g *standingCache) set(userID string, standing store.Standing) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.entries == nil {
		g.entries = map[string]standingEntry{}
	}
	// Stale entries go once the map grows: one per active user is small.
	if len(g.entries) > 10_000 {
		for id, e := range g.entries {
			if time.Since(e.fetched) >= standingTTL {
				delete(g.entries, id)
			}
		}
	}
	g.entries[userID] = standingEntry{standing: standing, fetched: time.Now()}
}

// nameGate lets one password check per team name run at a time in this
// process: a flood at one name then holds at most one hashing slot, so
// other teams' logins wait for one hash, not for the flood, and the
// flood's queue meets the name's lock after its first few checks.
type nameGate struct {
	mu    sync.Mutex
	gates map[string]*gateEntry
}

type gateEntry struct {
	ch    chan struct{}
	users int
}

// enter waits for name's turn (or ctx) and returns the function that ends it.
func (g *nameGate) enter(ctx context.Context, name string) (leave func(), err error) {
	g.mu.Lock()
	if g.gates == nil {
		g.gates = map[string]*gateEntry{}
	}
	e := g.gates[name]
	if e == nil {
		e = &gateEntry{ch: make(chan struct{}, 1)}
		g.gates[name] = e
	}
	e.users++
	g.mu.Unlock()
	release := func() {
		g.mu.Lock()
		if e.users--; e.users == 0 {
			delete(g.gates, name)
		}
		g.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
