package authz

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
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
)

// denial is how a reason is answered.
type denial struct {
	code codes.Code
	http int
}

// denials is the one table that turns a reason into a response.
var denials = map[Reason]denial{
	ReasonMissingToken:     {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonMalformed:        {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonInvalidSignature: {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonUnknownKID:       {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonExpired:          {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonNotYetValid:      {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonIssuer:           {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonAudience:         {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonAlgorithm:        {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonClaimsSchema:     {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonUserInactive:     {codes.PermissionDenied, http.StatusForbidden},
	ReasonKeysUnavailable:  {codes.Unavailable, http.StatusServiceUnavailable},
	ReasonStoreUnavailable: {codes.Unavailable, http.StatusServiceUnavailable},
}

// errMissingToken and errInactive are the Check path's own failures.
var (
	errMissingToken = errors.New("no bearer token")
	errInactive     = errors.New("user is deactivated")
	errStore        = errors.New("user store unavailable")
)

// Classify names the reason for a failed Check. It is the only place that
// inspects errors; an error it does not know is a malformed request, so an
// unforeseen failure still denies.
func Classify(err error) Reason {
	switch {
	case errors.Is(err, errMissingToken):
		return ReasonMissingToken
	case errors.Is(err, errInactive):
		return ReasonUserInactive
	case errors.Is(err, errStore):
		return ReasonStoreUnavailable
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
	case errors.Is(err, claims.ErrInvalid), errors.Is(err, token.ErrMissingUsername):
		return ReasonClaimsSchema
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The Check's deadline passed while waiting for keys.
		return ReasonKeysUnavailable
	}
	return ReasonMalformed
}
