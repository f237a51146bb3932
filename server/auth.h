#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "edgeloop/v1/admin.pb.h"
#include "store/database.h"
#include "store/migrations.h"

namespace edgeloop::server {

/// Who is calling: the operator token that authenticated the request.
struct Principal {
  std::string token_id;
  std::string name;
  v1::Role role = v1::ROLE_UNSPECIFIED;
  /// How the principal appears in audit fields (created_by, alias history).
  std::string actor() const { return name.empty() ? token_id : name; }
};

/// NOT OK with PERMISSION_DENIED unless `principal` holds at least `needed`.
absl::Status RequireRole(const Principal& principal, v1::Role needed);

/// TokenStore's table: api_tokens.
const store::ComponentMigrations& AuthMigrations();

/// Operator API tokens. Only a SHA-256 of each secret is stored: the secret is shown once,
/// when created. Secrets are 256 random bits, so a fast hash is enough (nothing to brute-force).
/// Thread-safe.
class TokenStore {
 public:
  TokenStore(store::Database* db, const Clock* clock) : db_(db), clock_(clock) {}

  /// Checks an `Authorization` header value ("Bearer <secret>"). UNAUTHENTICATED when it is
  /// missing, malformed, unknown, expired or revoked.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization_header);

  absl::StatusOr<v1::CreateTokenResponse> Create(const v1::CreateTokenRequest& request,
                                                 absl::string_view actor);
  /// In the order they were made, a page at a time.
  absl::StatusOr<v1::ListTokensResponse> List(const v1::ListTokensRequest& request);
  absl::StatusOr<v1::ApiToken> Revoke(absl::string_view id);

  /// Makes sure an admin can log in on first start: uses `EDGELOOP_ADMIN_TOKEN` when given
  /// (`env_secret`), otherwise the secret in `token_file`, creating that file (mode 0600)
  /// with a new secret when it does not exist. Idempotent across restarts.
  absl::Status BootstrapAdmin(const std::string& token_file, const std::string& env_secret);

 private:
  absl::Status InsertToken(const std::string& id, const std::string& name, v1::Role role,
                           const std::string& secret, int64_t expires_at_ms,
                           absl::string_view actor);
  absl::StatusOr<v1::ApiToken> Get(absl::string_view id);

  store::Database* db_;
  const Clock* clock_;
};

}  // namespace edgeloop::server
