// edgeloop token create|list|revoke: API tokens, and with --enroll enrollment tokens.
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cli/table.h"
#include "common/status.h"

namespace edgeloop::cli {
namespace {

absl::StatusOr<int64_t> TtlSeconds(const Args& args) {
  absl::Duration ttl;
  if (!absl::ParseDuration(args.Flag("ttl"), &ttl) || ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--ttl takes a duration such as 24h or 90m");
  }
  return absl::ToInt64Seconds(ttl);
}

absl::StatusOr<std::map<std::string, std::string>> CommaPairs(const std::string& text,
                                                              const std::string& flag) {
  std::vector<std::string> pairs = absl::StrSplit(text, ',', absl::SkipEmpty());
  return ParsePairs(pairs, flag);
}

absl::Status EnrollmentTokenCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  std::ostream& out = c.out;
  const std::string& verb = args.words[1];
  if (verb == "create") {
    v1::CreateEnrollmentTokenRequest request;
    ASSIGN_OR_RETURN(auto labels, CommaPairs(args.Flag("labels"), "labels"));
    request.mutable_labels()->insert(labels.begin(), labels.end());
    if (args.Has("max-uses")) {
      ASSIGN_OR_RETURN(int64_t uses, Number(args.Flag("max-uses"), "--max-uses"));
      request.set_max_uses(static_cast<int32_t>(std::min<int64_t>(uses, 1'000'000)));
    }
    if (args.Has("ttl")) {
      ASSIGN_OR_RETURN(int64_t ttl, TtlSeconds(args));
      request.set_ttl_seconds(ttl);
    }
    v1::CreateEnrollmentTokenResponse response;
    RETURN_IF_ERROR(
        FromGrpc(client.fleet().CreateEnrollmentToken(client.Context().get(), request, &response)));
    return Print(c, response, [&] {
      out << "enrollment token " << response.token().id() << " (" << response.token().max_uses()
          << " uses, expires " << Time(response.token().expire_time()) << "); shown only now:\n"
          << response.secret() << "\n";
    });
  }
  if (verb == "list") {
    ASSIGN_OR_RETURN(
        auto response,
        AllPages<v1::ListEnrollmentTokensResponse>(
            v1::ListEnrollmentTokensRequest(), [&](const auto& r, auto* page) {
              return FromGrpc(client.fleet().ListEnrollmentTokens(client.Context().get(), r, page));
            }));
    if (c.json()) return PrintJson(c, response);
    Table table({"ID", "USES", "LABELS", "CREATED", "EXPIRES", "REVOKED", "BY"});
    for (const auto& t : response.tokens()) {
      table.Add({t.id(), absl::StrCat(t.uses(), "/", t.max_uses()), Pairs(t.labels()),
                 Time(t.create_time()), Time(t.expire_time()), Time(t.revoke_time()),
                 t.created_by()});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "revoke") {
    RETURN_IF_ERROR(Need(args, 3, "token revoke --enroll ID"));
    v1::RevokeEnrollmentTokenRequest request;
    request.set_id(args.words[2]);
    v1::EnrollmentToken token;
    RETURN_IF_ERROR(
        FromGrpc(client.fleet().RevokeEnrollmentToken(client.Context().get(), request, &token)));
    out << "revoked enrollment token " << token.id() << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown command \"token ", verb, " --enroll\""));
}

}  // namespace

absl::Status TokenCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  std::ostream& out = c.out;
  RETURN_IF_ERROR(Need(args, 2, "token create|list|revoke ..."));
  const std::string& verb = args.words[1];
  if (args.Has("enroll")) return EnrollmentTokenCommand(c);
  if (verb == "create") {
    v1::CreateTokenRequest request;
    request.set_name(args.Flag("name"));
    std::string role = absl::AsciiStrToUpper(args.Flag("role", "viewer"));
    v1::Role parsed;
    if (!v1::Role_Parse(role, &parsed) || parsed == v1::ROLE_UNSPECIFIED) {
      return absl::InvalidArgumentError("--role must be viewer, operator or admin");
    }
    request.set_role(parsed);
    if (args.Has("ttl")) {
      ASSIGN_OR_RETURN(int64_t ttl, TtlSeconds(args));
      request.set_ttl_seconds(ttl);
    }
    if (request.name().empty())
      return absl::InvalidArgumentError("usage: edgeloop token create --name NAME --role ROLE");
    v1::CreateTokenResponse response;
    RETURN_IF_ERROR(
        FromGrpc(client.admin().CreateToken(client.Context().get(), request, &response)));
    return Print(c, response, [&] {
      out << "token " << response.token().id() << " ("
          << absl::AsciiStrToLower(v1::Role_Name(response.token().role()))
          << ") created; its secret is shown only now:\n"
          << response.secret() << "\n";
    });
  }
  if (verb == "list") {
    ASSIGN_OR_RETURN(
        auto response,
        AllPages<v1::ListTokensResponse>(v1::ListTokensRequest(), [&](const auto& r, auto* page) {
          return FromGrpc(client.admin().ListTokens(client.Context().get(), r, page));
        }));
    if (c.json()) return PrintJson(c, response);
    Table table({"ID", "NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED"});
    for (const auto& t : response.tokens()) {
      table.Add({t.id(), t.name(), absl::AsciiStrToLower(v1::Role_Name(t.role())),
                 Time(t.create_time()), Time(t.expire_time()), Time(t.revoke_time())});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "revoke") {
    RETURN_IF_ERROR(Need(args, 3, "token revoke ID"));
    v1::RevokeTokenRequest request;
    request.set_id(args.words[2]);
    v1::ApiToken token;
    RETURN_IF_ERROR(FromGrpc(client.admin().RevokeToken(client.Context().get(), request, &token)));
    return Print(c, token,
                 [&] { out << "revoked token " << token.id() << " (" << token.name() << ")\n"; });
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"token ", verb, "\" (see edgeloop --help)"));
}

}  // namespace edgeloop::cli
