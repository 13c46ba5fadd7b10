package authz

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// Reason names why a Check was denied. It is the JSON body's "error", the
// metrics' reason label and the log's reason key.
type Reason string

// The deny reasons. Allowed checks carry ReasonOK.
const (
	ReasonOK               Reason = "ok"
	ReasonMissingToken     Reason = "missing_token"
	ReasonMalformed        Reason = "malformed"
	ReasonInvalidSignature Reason = "invalid_signature"
	ReasonUnknownKID       Reason = "unknown_kid"
	ReasonExpired          Reason = "expired"
	ReasonNotYetValid      Reason = "not_yet_valid"
	ReasonIssuer           Reason = "issuer"
	ReasonAudience         Reason = "audience"
	ReasonAlgorithm        Reason = "algorithm"
	ReasonClaimsSchema     Reason = "claims_schema"
	ReasonUserInactive     Reason = "user_inactive"
	ReasonKeysUnavailable  Reason = "keys_unavailable"
	ReasonStoreUnavailable Reason = "store_unavailable"
	// Route rules (routes, default_route).
	ReasonBadPath           Reason = "bad_path"
	ReasonBadMethod         Reason = "bad_method"
	ReasonInsufficientScope Reason = "insufficient_scope"
	ReasonForbidden         Reason = "forbidden"
)

// Challenge is what a denial puts in www-authenticate.
type Challenge int

const (
	// ChallengeBearer: Bearer realm=..., with error="invalid_token" and
	// error_description when the request carried a credential (RFC 6750
	// §3.1).
	ChallengeBearer Challenge = iota
	// ChallengeScope: Bearer realm=..., error="insufficient_scope",
	// scope="<the route's scopes>".
	ChallengeScope
	// ChallengeNone: no www-authenticate (the failure is not the
	// token's: a bad path, a condition of the route, an outage).
	ChallengeNone
)

// Denial is how one reason is answered, wherever a token is refused: the
// Check's status and HTTP answer, the log level, and the status of an
// admin API call refused for the same reason.
type Denial struct {
	Reason Reason
	// Code is CheckResponse.status, and the admin API's gRPC status.
	Code codes.Code
	HTTP int
	// Level is the level of the log line: an operator must look at a store
	// or key source that is down, not at every bad token.
	Level slog.Level
	// RetryAfter asks the client to come back (the 503s): the failure is
	// ours, not its.
	RetryAfter bool
	Challenge  Challenge
}

// denials is the one table that turns a reason into a response.
var denials = map[Reason]Denial{
	ReasonMissingToken:     {ReasonMissingToken, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonMalformed:        {ReasonMalformed, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonInvalidSignature: {ReasonInvalidSignature, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonUnknownKID:       {ReasonUnknownKID, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonExpired:          {ReasonExpired, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonNotYetValid:      {ReasonNotYetValid, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonIssuer:           {ReasonIssuer, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonAudience:         {ReasonAudience, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonAlgorithm:        {ReasonAlgorithm, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonClaimsSchema:     {ReasonClaimsSchema, codes.Unauthenticated, http.StatusUnauthorized, slog.LevelInfo, false, ChallengeBearer},
	ReasonUserInactive:     {ReasonUserInactive, codes.PermissionDenied, http.StatusForbidden, slog.LevelInfo, false, ChallengeBearer},
	ReasonKeysUnavailable:  {ReasonKeysUnavailable, codes.Unavailable, http.StatusServiceUnavailable, slog.LevelWarn, true, ChallengeNone},
	ReasonStoreUnavailable: {ReasonStoreUnavailable, codes.Unavailable, http.StatusServiceUnavailable, slog.LevelWarn, true, ChallengeNone},

	ReasonBadPath:           {ReasonBadPath, codes.InvalidArgument, http.StatusBadRequest, slog.LevelInfo, false, ChallengeNone},
	ReasonBadMethod:         {ReasonBadMethod, codes.InvalidArgument, http.StatusBadRequest, slog.LevelInfo, false, ChallengeNone},
	ReasonInsufficientScope: {ReasonInsufficientScope, codes.PermissionDenied, http.StatusForbidden, slog.LevelInfo, false, ChallengeScope},
	ReasonForbidden:         {ReasonForbidden, codes.PermissionDenied, http.StatusForbidden, slog.LevelInfo, false, ChallengeNone},
}

// Deny returns how err is answered. An error it does not know is a
// malformed request, so an unforeseen failure still denies.
func Deny(err error) Denial {
	return denials[Classify(err)]
}

// The Check path's own failures.
var (
	// ErrMissingToken: the request carries no credential at all.
	ErrMissingToken = errors.New("no bearer token")
	errInactive     = errors.New("user is deactivated")
	errStore        = errors.New("user store unavailable")
)

// tokenError is a failure of a request that carried a credential: RFC 6750
// §3.1 then answers error="invalid_token". raw is the token when one was
// extracted, for the log's fingerprint.
type tokenError struct {
	err error
	raw string
}

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// withToken marks err as the failure of a request that carried the
// credential raw ("" when it was not one well-formed token).
func withToken(err error, raw string) error {
	if err == nil {
		return nil
	}
	return &tokenError{err: err, raw: raw}
}

// givenToken reports whether err is the failure of a request that carried
// a credential, and the token when one was extracted.
func givenToken(err error) (raw string, given bool) {
	var te *tokenError
	if errors.As(err, &te) {
		return te.raw, true
	}
	return "", false
}

// Classify names the reason for a failed Check. It is the only place that
// inspects errors; an error it does not know is a malformed request, so an
// unforeseen failure still denies.
func Classify(err error) Reason {
	switch {
	case errors.Is(err, ErrMissingToken):
		return ReasonMissingToken
	case errors.Is(err, errInactive):
		return ReasonUserInactive
	case errors.Is(err, errStore):
		return ReasonStoreUnavailable
	case errors.Is(err, route.ErrBadPath):
		return ReasonBadPath
	case errors.Is(err, route.ErrBadMethod):
		return ReasonBadMethod
	case errors.Is(err, route.ErrInsufficientScope):
		return ReasonInsufficientScope
	case errors.Is(err, route.ErrForbidden):
		return ReasonForbidden
	case errors.Is(err, keys.ErrUnavailable):
		return ReasonKeysUnavailable
	case errors.Is(err, keys.ErrUnknownKID):
		return ReasonUnknownKID
	case errors.Is(err, token.ErrAlgorithm):
		return ReasonAlgorithm
	case errors.Is(err, token.ErrExpired):
		return ReasonExpired
	case errors.Is(err, token.ErrNotYetValid):
		return ReasonNotYetValid
	case errors.Is(err, token.ErrIssuer):
		return ReasonIssuer
	case errors.Is(err, token.ErrAudience):
		return ReasonAudience
	case errors.Is(err, token.ErrSignature):
		return ReasonInvalidSignature
	case errors.Is(err, claims.ErrInvalid), errors.Is(err, token.ErrClaims):
		return ReasonClaimsSchema
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The Check's deadline passed while waiting for keys.
		return ReasonKeysUnavailable
	}
	return ReasonMalformed
}
