package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/hackarena/hackarena/platform/auth"
	"github.com/hackarena/hackarena/platform/store"
)

// organizerName is the account HACKARENA_ORGANIZER_PASSWORD bootstraps.
const organizerName = "organizer"

// EnsureOrganizer creates the organizer account with password if it does not
// exist yet. An existing account keeps its password.
func EnsureOrganizer(ctx context.Context, st *store.Store, password string) error {
	if len(password) < minPassword {
		return fmt.Errorf("HACKARENA_ORGANIZER_PASSWORD must be at least %d characters", minPassword)
	}
	if _, err := st.TeamByName(ctx, organizerName); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	_, err = st.CreateTeam(ctx, organizerName, hash, store.RoleOrganizer)
	if errors.Is(err, store.ErrNameTaken) {
		return nil
	}
	return err
}
