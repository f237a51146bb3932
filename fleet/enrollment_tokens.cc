#include "fleet/enrollment_tokens.h"

#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "common/enrollment_token.h"
#include "common/names.h"
#include "common/paging.h"
#include "common/proto_json.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"

namespace edgeloop::fleet {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kColumns[] =
    "id, labels, max_uses, uses, expires_at_ms, revoked_at_ms, created_at_ms, created_by";

absl::StatusOr<v1::EnrollmentToken> FromRow(const store::Row& row) {
  v1::EnrollmentToken token;
  RETURN_IF_ERROR(ParseProtoJson(row.Text("labels"), &token, /*ignore_unknown_fields=*/true));
  token.set_id(row.Text("id"));
  token.set_max_uses(static_cast<int32_t>(row.Int("max_uses")));
  token.set_uses(static_cast<int32_t>(row.Int("uses")));
  *token.mutable_expire_time() = TimeUtil::MillisecondsToTimestamp(row.Int("expires_at_ms"));
  if (row.Int("revoked_at_ms") > 0)
    *token.mutable_revoke_time() = TimeUtil::MillisecondsToTimestamp(row.Int("revoked_at_ms"));
  *token.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(row.Int("created_at_ms"));
  token.set_created_by(row.Text("created_by"));
  return token;
}

// The hash of a secret compared without an early exit, so timing tells nothing about it.
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string LabelsJson(const v1::EnrollmentToken& token) {
  v1::EnrollmentToken labels_only;
  *labels_only.mutable_labels() = token.labels();
  return PrintProtoJson(labels_only);
}

}  // namespace

absl::StatusOr<v1::CreateEnrollmentTokenResponse> EnrollmentTokens::Create(
    const v1::CreateEnrollmentTokenRequest& request, absl::string_view actor) {
  RETURN_IF_ERROR(ValidateLabels(request.labels()));
  if (request.max_uses() < 0 || request.max_uses() > 1'000'000) {
    return absl::InvalidArgumentError("maxUses must be between 1 and 1000000");
  }
  if (request.ttl_seconds() < 0 || request.ttl_seconds() > int64_t{366} * 24 * 3600) {
    return absl::InvalidArgumentError("ttlSeconds must be between 1 and one year");
  }
  const int64_t max_uses = request.max_uses() == 0 ? 1 : request.max_uses();
  const absl::Duration ttl =
      request.ttl_seconds() == 0 ? absl::Hours(24) : absl::Seconds(request.ttl_seconds());
  const absl::Time now = clock_->Now();
  EnrollmentTokenParts parts{RandomHex(8), RandomHex(32), ca_pin_};
  v1::EnrollmentToken labels;
  *labels.mutable_labels() = request.labels();
  RETURN_IF_ERROR(store::RunInTransaction(*db_, [&](store::Transaction& tx) {
    return tx
        .Execute(absl::StrCat("INSERT INTO enrollment_tokens (id, secret_hash, labels, max_uses, "
                              "uses, expires_at_ms, "
                              "revoked_at_ms, created_at_ms, created_by) VALUES ($1, $2, $3, $4, "
                              "0, $5, 0, $6, $7)"),
                 {parts.id, Sha256Hex(parts.secret), LabelsJson(labels), max_uses,
                  absl::ToUnixMillis(now + ttl), absl::ToUnixMillis(now), std::string(actor)})
        .status();
  }));
  ASSIGN_OR_RETURN(
      store::Rows rows,
      db_->Query(absl::StrCat("SELECT ", kColumns, " FROM enrollment_tokens WHERE id = $1"),
                 {parts.id}));
  v1::CreateEnrollmentTokenResponse response;
  ASSIGN_OR_RETURN(*response.mutable_token(), FromRow(rows.at(0)));
  response.set_secret(FormatEnrollmentToken(parts));
  return response;
}

absl::StatusOr<v1::ListEnrollmentTokensResponse> EnrollmentTokens::List(
    const v1::ListEnrollmentTokensRequest& request) {
  ASSIGN_OR_RETURN(TimeIdKey after, ParseTimeIdPageToken(request.page_token()));
  const int page = PageSize(request.page_size());
  ASSIGN_OR_RETURN(
      store::Rows rows,
      db_->Query(absl::StrCat("SELECT ", kColumns, " FROM enrollment_tokens WHERE created_at_ms > "
                              "$1 OR (created_at_ms = $1 AND id > $2) ORDER BY created_at_ms, id "
                              "LIMIT $3"),
                 {after.time_ms, after.id, int64_t{page} + 1}));
  v1::ListEnrollmentTokensResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) -> absl::Status {
            ASSIGN_OR_RETURN(*response.add_tokens(), FromRow(row));
            return absl::OkStatus();
          },
          [](const store::Row& row) { return TimeIdPageToken(row.Int("created_at_ms"), row.Text("id")); }));
  return response;
}

absl::StatusOr<v1::EnrollmentToken> EnrollmentTokens::Revoke(absl::string_view id) {
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  RETURN_IF_ERROR(store::RunInTransaction(*db_, [&](store::Transaction& tx) {
    return tx
        .Execute(
            "UPDATE enrollment_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms = 0",
            {std::string(id), now})
        .status();
  }));
  ASSIGN_OR_RETURN(
      store::Rows rows,
      db_->Query(absl::StrCat("SELECT ", kColumns, " FROM enrollment_tokens WHERE id = $1"),
                 {std::string(id)}));
  if (rows.empty())
    return absl::NotFoundError(absl::StrCat("enrollment token \"", id, "\" not found"));
  return FromRow(rows[0]);
}

absl::StatusOr<v1::EnrollmentToken> EnrollmentTokens::Check(absl::string_view token) {
  auto parts = ParseEnrollmentToken(token);
  if (!parts.ok()) return absl::UnauthenticatedError(parts.status().message());
  if (parts->ca_pin != ca_pin_) {
    return absl::UnauthenticatedError(
        "enrollment token was issued by another server (its CA pin differs)");
  }
  ASSIGN_OR_RETURN(store::Rows rows,
                   db_->Query(absl::StrCat("SELECT ", kColumns,
                                           ", secret_hash FROM enrollment_tokens WHERE id = $1"),
                              {parts->id}));
  if (rows.empty() || !ConstantTimeEquals(rows[0].Text("secret_hash"), Sha256Hex(parts->secret)))
    return absl::UnauthenticatedError("unknown enrollment token");
  return FromRow(rows[0]);
}

absl::StatusOr<v1::EnrollmentToken> EnrollmentTokens::Spend(store::Transaction& tx,
                                                            absl::string_view token) {
  auto parts = ParseEnrollmentToken(token);
  if (!parts.ok()) return absl::UnauthenticatedError(parts.status().message());
  if (parts->ca_pin != ca_pin_) {
    return absl::UnauthenticatedError(
        "enrollment token was issued by another server (its CA pin differs)");
  }
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  // One statement checks and spends, so two devices racing for the last use cannot both win.
  ASSIGN_OR_RETURN(
      store::Rows spent,
      tx.Query(absl::StrCat("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1 AND "
                            "secret_hash = $2 AND uses < max_uses AND revoked_at_ms = 0 AND "
                            "expires_at_ms > $3 RETURNING ",
                            kColumns),
               {parts->id, Sha256Hex(parts->secret), now}));
  if (!spent.empty()) return FromRow(spent[0]);
  ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.Query(
          "SELECT secret_hash, uses, max_uses, revoked_at_ms, expires_at_ms FROM enrollment_tokens "
          "WHERE id = $1",
          {parts->id}));
  if (rows.empty() || !ConstantTimeEquals(rows[0].Text("secret_hash"), Sha256Hex(parts->secret))) {
    return absl::UnauthenticatedError("unknown enrollment token");
  }
  const store::Row& row = rows[0];
  if (row.Int("revoked_at_ms") > 0) return absl::PermissionDeniedError("enrollment token has been revoked");
  if (row.Int("expires_at_ms") <= now) {
    return absl::PermissionDeniedError(
        absl::StrCat("enrollment token expired at ",
                     absl::FormatTime(absl::FromUnixMillis(row.Int("expires_at_ms")), absl::UTCTimeZone())));
  }
  return absl::PermissionDeniedError(
      absl::StrCat("enrollment token is used up (", row.Int("uses"), " of ", row.Int("max_uses"), " uses)"));
}

}  // namespace edgeloop::fleet
