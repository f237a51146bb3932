#include "server/auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/paging.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"

namespace edgeloop::server {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::string_view kSecretPrefix = "edgeloop_";

v1::ApiToken TokenFromRow(const store::Row& row) {
  v1::ApiToken token;
  token.set_id(row.Text("id"));
  token.set_name(row.Text("name"));
  v1::Role role = v1::ROLE_UNSPECIFIED;
  v1::Role_Parse(row.Text("role"), &role);
  token.set_role(role);
  *token.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(row.Int("created_at_ms"));
  token.set_created_by(row.Text("created_by"));
  if (row.Int("expires_at_ms") > 0)
    *token.mutable_expire_time() = TimeUtil::MillisecondsToTimestamp(row.Int("expires_at_ms"));
  if (row.Int("revoked_at_ms") > 0)
    *token.mutable_revoke_time() = TimeUtil::MillisecondsToTimestamp(row.Int("revoked_at_ms"));
  return token;
}

constexpr char kTokenColumns[] =
    "id, name, role, created_at_ms, created_by, expires_at_ms, revoked_at_ms";

}  // namespace

const store::ComponentMigrations& AuthMigrations() {
  static const auto* migrations = new store::ComponentMigrations{"auth", {
      {2, "api_tokens", R"sql(
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  secret_hash TEXT NOT NULL UNIQUE,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT NOT NULL
);
)sql"},
  }};
  return *migrations;
}

absl::Status RequireRole(const Principal& principal, v1::Role needed) {
  if (principal.role >= needed) return absl::OkStatus();
  std::string role = v1::Role_Name(needed);
  return absl::PermissionDeniedError(absl::StrCat(
      "this call needs the ", absl::AsciiStrToLower(role), " role; token \"", principal.actor(),
      "\" is ", absl::AsciiStrToLower(v1::Role_Name(principal.role))));
}

absl::StatusOr<Principal> TokenStore::Authenticate(absl::string_view header) {
  if (header.empty()) {
    return absl::UnauthenticatedError("missing credentials: send Authorization: Bearer <token>");
  }
  absl::string_view secret = header;
  if (!absl::ConsumePrefix(&secret, "Bearer ") && !absl::ConsumePrefix(&secret, "bearer ")) {
    return absl::UnauthenticatedError(
        "malformed Authorization header: expected \"Bearer <token>\"");
  }
  secret = absl::StripAsciiWhitespace(secret);
  if (secret.empty() || secret.size() > 256) return absl::UnauthenticatedError("invalid token");
  ASSIGN_OR_RETURN(store::Rows rows,
                   db_->Query("SELECT id, name, role, expires_at_ms, revoked_at_ms FROM api_tokens "
                              "WHERE secret_hash = $1",
                              {Sha256Hex(secret)}));
  if (rows.empty()) return absl::UnauthenticatedError("invalid token");
  const store::Row& row = rows[0];
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  if (row.Int("revoked_at_ms") > 0) return absl::UnauthenticatedError("token has been revoked");
  if (row.Int("expires_at_ms") > 0 && row.Int("expires_at_ms") <= now)
    return absl::UnauthenticatedError("token has expired");
  Principal principal;
  principal.token_id = row.Text("id");
  principal.name = row.Text("name");
  v1::Role_Parse(row.Text("role"), &principal.role);
  return principal;
}

absl::Status TokenStore::InsertToken(const std::string& id, const std::string& name, v1::Role role,
                                     const std::string& secret, int64_t expires_at_ms,
                                     absl::string_view actor) {
  return store::RunInTransaction(*db_, [&](store::Transaction& tx) {
    return tx
        .Execute(
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_at_ms, created_by, "
            "expires_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
            {id, name, v1::Role_Name(role), Sha256Hex(secret), absl::ToUnixMillis(clock_->Now()),
             std::string(actor), expires_at_ms})
        .status();
  });
}

absl::StatusOr<v1::CreateTokenResponse> TokenStore::Create(const v1::CreateTokenRequest& request,
                                                           absl::string_view actor) {
  if (request.name().empty() || request.name().size() > 128) {
    return absl::InvalidArgumentError("token name must have 1-128 characters");
  }
  if (request.role() == v1::ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError("token role is required: VIEWER, OPERATOR or ADMIN");
  }
  if (request.ttl_seconds() < 0) return absl::InvalidArgumentError("ttlSeconds is negative");
  const std::string id = RandomHex(8);
  const std::string secret = absl::StrCat(kSecretPrefix, RandomHex(32));
  const int64_t expires =
      request.ttl_seconds() > 0
          ? absl::ToUnixMillis(clock_->Now() + absl::Seconds(request.ttl_seconds()))
          : 0;
  RETURN_IF_ERROR(InsertToken(id, request.name(), request.role(), secret, expires, actor));
  v1::CreateTokenResponse response;
  ASSIGN_OR_RETURN(*response.mutable_token(), Get(id));
  response.set_secret(secret);
  return response;
}

absl::StatusOr<v1::ApiToken> TokenStore::Get(absl::string_view id) {
  ASSIGN_OR_RETURN(store::Rows rows, db_->Query(absl::StrCat("SELECT ", kTokenColumns,
                                                             " FROM api_tokens WHERE id = $1"),
                                                {std::string(id)}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("token \"", id, "\" not found"));
  return TokenFromRow(rows[0]);
}

absl::StatusOr<v1::ListTokensResponse> TokenStore::List(const v1::ListTokensRequest& request) {
  ASSIGN_OR_RETURN(TimeIdKey after, ParseTimeIdPageToken(request.page_token()));
  const int page = PageSize(request.page_size());
  ASSIGN_OR_RETURN(
      store::Rows rows,
      db_->Query(absl::StrCat("SELECT ", kTokenColumns, " FROM api_tokens WHERE created_at_ms > $1 "
                              "OR (created_at_ms = $1 AND id > $2) ORDER BY created_at_ms, id "
                              "LIMIT $3"),
                 {after.time_ms, after.id, int64_t{page} + 1}));
  v1::ListTokensResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) {
            *response.add_tokens() = TokenFromRow(row);
            return absl::OkStatus();
          },
          [](const store::Row& row) { return TimeIdPageToken(row.Int("created_at_ms"), row.Text("id")); }));
  return response;
}

absl::StatusOr<v1::ApiToken> TokenStore::Revoke(absl::string_view id) {
  ASSIGN_OR_RETURN(v1::ApiToken token, Get(id));
  if (!token.has_revoke_time()) {
    RETURN_IF_ERROR(store::RunInTransaction(*db_, [&](store::Transaction& tx) {
      return tx
          .Execute("UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms = 0",
                   {std::string(id), absl::ToUnixMillis(clock_->Now())})
          .status();
    }));
  }
  return Get(id);
}

absl::Status TokenStore::BootstrapAdmin(const std::string& token_file,
                                        const std::string& env_secret) {
  std::string secret = env_secret;
  std::string name = "admin (EDGELOOP_ADMIN_TOKEN)";
  if (secret.empty()) {
    name = "admin (bootstrap)";
    auto existing = ReadFile(token_file);
    if (existing.ok()) {
      secret = std::string(absl::StripAsciiWhitespace(*existing));
    } else if (absl::IsNotFound(existing.status())) {
      secret = absl::StrCat(kSecretPrefix, RandomHex(32));
      RETURN_IF_ERROR(WriteFileAtomically(token_file, secret + "\n", 0600));
      Log(LogLevel::kInfo, "wrote bootstrap admin token", {{"path", token_file}});
    } else {
      return existing.status();
    }
  }
  if (secret.size() < 16)
    return absl::InvalidArgumentError("admin token must have at least 16 characters");
  ASSIGN_OR_RETURN(store::Rows rows, db_->Query("SELECT 1 FROM api_tokens WHERE secret_hash = $1",
                                                {Sha256Hex(secret)}));
  if (!rows.empty()) return absl::OkStatus();
  absl::Status status = InsertToken(RandomHex(8), name, v1::ADMIN, secret, 0, "edgeloop-server");
  // Another replica inserted the same secret at the same moment.
  if (absl::IsAlreadyExists(status)) return absl::OkStatus();
  return status;
}

}  // namespace edgeloop::server
