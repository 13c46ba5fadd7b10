package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jwtauthz/jwtauthz/admin"
)

// validateAdmin checks admin.*: with the API on, some claim is required
// unless allow_any_verified_token says every verified token may call;
// admin.providers names configured providers.
func (c *Config) validateAdmin() []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	a := c.Admin
	if a.Listen != "" && len(a.RequireClaims) == 0 && !a.AllowAnyVerifiedToken {
		add("admin.require_claims", "must name a claim when admin.listen is set (e.g. {roles: jwtauthz-admin}), or set admin.allow_any_verified_token: true to let every verified token list and deactivate users")
	}
	if err := admin.ValidateRequireClaims(a.RequireClaims); err != nil {
		add("admin.require_claims", "%v", err)
	}
	names := make([]string, len(c.Providers))
	for i, p := range c.Providers {
		names[i] = p.Name
	}
	for i, p := range a.Providers {
		if !slices.Contains(names, p) {
			add(fmt.Sprintf("admin.providers[%d]", i), "%q is not a configured provider (%s)", p, strings.Join(names, ", "))
		}
	}
	return errs
}

// AdminPolicy is who may call the admin API under cfg, verified by the
// Check path's providers.
func AdminPolicy(cfg *Config, ps *Providers) admin.Policy {
	return admin.Policy{Verifier: ps.Router, RequireClaims: cfg.Admin.RequireClaims, Providers: cfg.Admin.Providers}
}
