#include "cli/commands.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/table.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/status.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/time_util.h"

namespace edgeloop::cli {
namespace {

// Every page of a paged list, as one response (the server answers at most 1000 items a page).
template <typename Response, typename Request, typename Call>
absl::StatusOr<Response> AllPages(Request request, Call call) {
  Response all;
  do {
    Response page;
    RETURN_IF_ERROR(call(request, &page));
    request.set_page_token(page.next_page_token());
    all.MergeFrom(page);
  } while (!request.page_token().empty());
  all.clear_next_page_token();
  return all;
}

using google::protobuf::util::TimeUtil;

constexpr size_t kUploadChunkBytes = 1 << 20;

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  std::string s = TimeUtil::ToString(t);
  return s.substr(0, 19) + "Z";
}

std::string Shape(const v1::TensorSpec& spec) {
  std::vector<std::string> dims;
  for (int i = 0; i < spec.shape_size(); ++i) {
    dims.push_back(spec.shape(i) >= 0 ? std::to_string(spec.shape(i))
                                      : (spec.dim_names(i).empty() ? "?" : spec.dim_names(i)));
  }
  return absl::StrCat(spec.name(), ":", spec.dtype(), "[", absl::StrJoin(dims, ","), "]");
}

std::string Pairs(const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  return sorted.empty() ? "-" : absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

// "set 8, acc 0.875, qemu" from an artifact's validation JSON.
std::string ValidationSummary(const std::string& json) {
  google::protobuf::Struct v;
  if (json.empty() || !ParseProtoJson(json, &v).ok()) return "-";
  const auto& f = v.fields();
  auto has = [&](const char* key) { return f.count(key) > 0; };
  std::string summary = absl::StrCat(
      has("inputs") && f.at("inputs").string_value() == "validation set" ? "set " : "generated ",
      has("samples") ? static_cast<int64_t>(f.at("samples").number_value()) : 0);
  if (has("accuracy")) absl::StrAppendFormat(&summary, ", acc %.3g", f.at("accuracy").number_value());
  if (has("emulated") && f.at("emulated").bool_value()) absl::StrAppend(&summary, ", qemu");
  return summary;
}

absl::Status Need(const Args& args, size_t words, const char* usage) {
  if (args.words.size() < words)
    return absl::InvalidArgumentError(absl::StrCat("usage: edgeloop ", usage));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Number(const std::string& text, const char* what) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a positive number, got \"", text, "\""));
  }
  return n;
}

void PrintModels(const std::vector<const v1::Model*>& models, OutputFormat format,
                 std::ostream& out) {
  Table table({"NAME", "LATEST", "ALIASES", "LABELS", "CREATED"});
  for (const v1::Model* m : models) {
    std::map<std::string, int64_t> aliases(m->aliases().begin(), m->aliases().end());
    table.Add({m->name(), m->latest_version() ? std::to_string(m->latest_version()) : "-",
               aliases.empty() ? "-" : absl::StrJoin(aliases, ",", absl::PairFormatter("=")),
               Pairs(m->labels()), Time(m->create_time())});
  }
  (void)format;
  out << table.Render();
}

void PrintVersion(const v1::ModelVersion& v, std::ostream& out) {
  Table table({"FIELD", "VALUE"});
  table.Add({"model", v.model()});
  table.Add({"version", std::to_string(v.version())});
  table.Add({"status", v1::VersionStatus_Name(v.status())});
  if (!v.status_message().empty()) table.Add({"status message", v.status_message()});
  table.Add({"onnx", absl::StrCat(v.onnx_digest(), " (", v.onnx_size(), " bytes)")});
  table.Add({"opset", std::to_string(v.opset())});
  table.Add({"producer", v.producer().empty() ? "-" : v.producer()});
  for (const auto& i : v.inputs()) table.Add({"input", Shape(i)});
  for (const auto& o : v.outputs()) table.Add({"output", Shape(o)});
  std::map<std::string, double> metrics(v.metrics().begin(), v.metrics().end());
  for (const auto& [k, val] : metrics) table.Add({"metric", absl::StrCat(k, "=", val)});
  table.Add({"labels", Pairs(v.labels())});
  if (v.lineage().parent_version() > 0)
    table.Add({"parent", std::to_string(v.lineage().parent_version())});
  if (!v.lineage().training_run_id().empty())
    table.Add({"training run", v.lineage().training_run_id()});
  if (!v.lineage().dataset_digest().empty()) table.Add({"dataset", v.lineage().dataset_digest()});
  if (!v.lineage().source().empty()) table.Add({"source", v.lineage().source()});
  table.Add({"created", absl::StrCat(Time(v.create_time()), " by ", v.created_by())});
  out << table.Render();
}

/// Streams a file to UploadBlob in 1 MiB chunks and checks the server's digest against ours.
absl::StatusOr<v1::Blob> UploadFile(Client& client, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  file.seekg(0, std::ios::end);
  const int64_t size = file.tellg();
  file.seekg(0);
  auto context = client.Context(3600);
  v1::Blob blob;
  auto writer = client.registry().UploadBlob(context.get(), &blob);
  v1::UploadBlobRequest message;
  message.mutable_header()->set_size(size);
  bool stream_ok = writer->Write(message);
  Sha256 hash;
  std::string chunk(kUploadChunkBytes, '\0');
  while (stream_ok && file) {
    file.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    std::streamsize n = file.gcount();
    if (n <= 0) break;
    hash.Update(absl::string_view(chunk.data(), static_cast<size_t>(n)));
    message.set_chunk(chunk.data(), static_cast<size_t>(n));
    stream_ok = writer->Write(message);
  }
  if (stream_ok) writer->WritesDone();
  RETURN_IF_ERROR(FromGrpc(writer->Finish()));
  const std::string local = DigestFromHex(hash.HexDigest());
  if (blob.digest() != local) {
    return absl::DataLossError(
        absl::StrCat("server stored ", blob.digest(), " but the file hashes to ", local));
  }
  return blob;
}

absl::Status ModelCommand(const Args& args, Client& client, OutputFormat format,
                          std::ostream& out) {
  RETURN_IF_ERROR(Need(args, 2, "model create|push|list|show|alias ..."));
  const std::string& verb = args.words[1];
  if (verb == "create") {
    RETURN_IF_ERROR(Need(args, 3, "model create NAME [--description TEXT] [--label k=v ...]"));
    v1::CreateModelRequest request;
    request.set_name(args.words[2]);
    request.set_description(args.Flag("description"));
    ASSIGN_OR_RETURN(auto labels, ParsePairs(args.All("label"), "label"));
    request.mutable_labels()->insert(labels.begin(), labels.end());
    v1::Model model;
    RETURN_IF_ERROR(
        FromGrpc(client.registry().CreateModel(client.Context().get(), request, &model)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(model, true) << "\n";
    } else {
      out << "created model " << model.name() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "list") {
    ASSIGN_OR_RETURN(auto all, AllPages<v1::ListModelsResponse>(
                                   v1::ListModelsRequest(), [&](const auto& request, auto* page) {
                                     return FromGrpc(client.registry().ListModels(
                                         client.Context().get(), request, page));
                                   }));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(all, true) << "\n";
      return absl::OkStatus();
    }
    std::vector<const v1::Model*> models;
    for (auto& m : all.models()) models.push_back(&m);
    PrintModels(models, format, out);
    return absl::OkStatus();
  }
  if (verb == "show") {
    RETURN_IF_ERROR(Need(args, 3, "model show NAME [VERSION|ALIAS]"));
    if (args.words.size() >= 4) {
      v1::GetVersionRequest request;
      request.set_model(args.words[2]);
      int64_t number = 0;
      if (absl::SimpleAtoi(args.words[3], &number)) {
        request.set_version(number);
      } else {
        request.set_alias(args.words[3]);
      }
      v1::ModelVersion version;
      RETURN_IF_ERROR(
          FromGrpc(client.registry().GetVersion(client.Context().get(), request, &version)));
      if (format == OutputFormat::kJson) {
        out << PrintProtoJson(version, true) << "\n";
      } else {
        PrintVersion(version, out);
      }
      return absl::OkStatus();
    }
    v1::GetModelRequest get;
    get.set_model(args.words[2]);
    v1::Model model;
    RETURN_IF_ERROR(FromGrpc(client.registry().GetModel(client.Context().get(), get, &model)));
    v1::ListVersionsRequest list;
    list.set_model(model.name());
    ASSIGN_OR_RETURN(auto versions,
                     AllPages<v1::ListVersionsResponse>(list, [&](const auto& request, auto* page) {
                       return FromGrpc(
                           client.registry().ListVersions(client.Context().get(), request, page));
                     }));
    if (format == OutputFormat::kJson) {
      out << "{\"model\": " << PrintProtoJson(model, true)
          << ",\n\"versions\": " << PrintProtoJson(versions, true) << "}\n";
      return absl::OkStatus();
    }
    PrintModels({&model}, format, out);
    if (!model.description().empty()) out << "\n" << model.description() << "\n";
    out << "\n";
    Table table({"VERSION", "STATUS", "DIGEST", "SIZE", "INPUTS", "CREATED", "BY"});
    for (const auto& v : versions.versions()) {
      std::vector<std::string> inputs;
      for (const auto& i : v.inputs()) inputs.push_back(Shape(i));
      table.Add({std::to_string(v.version()), v1::VersionStatus_Name(v.status()),
                 v.onnx_digest().substr(0, 19), std::to_string(v.onnx_size()),
                 absl::StrJoin(inputs, " "), Time(v.create_time()), v.created_by()});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "push") {
    RETURN_IF_ERROR(Need(
        args, 4,
        "model push NAME FILE.onnx [--label k=v] [--metric k=v] [--parent N] [--training-run ID] "
        "[--dataset-digest sha256:...] [--source TEXT] [--validation FILE] [--calibration FILE]"));
    v1::CreateVersionRequest request;
    request.set_model(args.words[2]);
    ASSIGN_OR_RETURN(v1::Blob onnx, UploadFile(client, args.words[3]));
    request.set_onnx_digest(onnx.digest());
    if (args.Has("validation")) {
      ASSIGN_OR_RETURN(v1::Blob blob, UploadFile(client, args.Flag("validation")));
      request.set_validation_digest(blob.digest());
    }
    if (args.Has("calibration")) {
      ASSIGN_OR_RETURN(v1::Blob blob, UploadFile(client, args.Flag("calibration")));
      request.set_calibration_digest(blob.digest());
    }
    ASSIGN_OR_RETURN(auto labels, ParsePairs(args.All("label"), "label"));
    request.mutable_labels()->insert(labels.begin(), labels.end());
    ASSIGN_OR_RETURN(auto metrics, ParsePairs(args.All("metric"), "metric"));
    for (const auto& [k, v] : metrics) {
      double value = 0;
      if (!absl::SimpleAtod(v, &value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--metric ", k, " must be a number, got \"", v, "\""));
      }
      (*request.mutable_metrics())[k] = value;
    }
    if (args.Has("parent")) {
      ASSIGN_OR_RETURN(int64_t parent, Number(args.Flag("parent"), "--parent"));
      request.mutable_lineage()->set_parent_version(parent);
    }
    if (args.Has("training-run"))
      request.mutable_lineage()->set_training_run_id(args.Flag("training-run"));
    if (args.Has("dataset-digest"))
      request.mutable_lineage()->set_dataset_digest(args.Flag("dataset-digest"));
    if (args.Has("source")) request.mutable_lineage()->set_source(args.Flag("source"));
    v1::ModelVersion version;
    RETURN_IF_ERROR(
        FromGrpc(client.registry().CreateVersion(client.Context(600).get(), request, &version)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(version, true) << "\n";
    } else {
      out << "pushed " << version.model() << " version " << version.version() << " "
          << version.onnx_digest() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "artifacts") {
    RETURN_IF_ERROR(Need(args, 4, "model artifacts NAME VERSION"));
    v1::ListArtifactsRequest request;
    request.set_model(args.words[2]);
    ASSIGN_OR_RETURN(int64_t number, Number(args.words[3], "VERSION"));
    request.set_version(number);
    v1::ListArtifactsResponse response;
    RETURN_IF_ERROR(
        FromGrpc(client.registry().ListArtifacts(client.Context().get(), request, &response)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(response, true) << "\n";
      return absl::OkStatus();
    }
    std::map<std::string, const v1::Artifact*> built;
    for (const auto& a : response.artifacts()) built[a.target()] = &a;
    Table table({"TARGET", "JOB", "MODULE", "SIZE", "COMPILE S", "SIGNED", "VALIDATED", "NOTE"});
    for (const auto& j : response.jobs()) {
      const v1::Artifact* a = built.count(j.target()) ? built[j.target()] : nullptr;
      table.Add({j.target(), j.state(), a ? a->module_digest().substr(0, 19) : "-",
                 a ? std::to_string(a->module_size()) : "-",
                 a ? absl::StrFormat("%.2f", a->compile_seconds()) : "-",
                 a && !a->signature().empty() ? "ed25519" : "-",
                 a ? ValidationSummary(a->validation()) : "-", j.error().empty() ? "-" : j.error().substr(0, 80)});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "alias") {
    RETURN_IF_ERROR(
        Need(args, 5, "model alias set NAME ALIAS VERSION | model alias history NAME ALIAS"));
    const std::string& action = args.words[2];
    if (action == "set") {
      RETURN_IF_ERROR(Need(args, 6, "model alias set NAME ALIAS VERSION"));
      v1::SetAliasRequest request;
      request.set_model(args.words[3]);
      request.set_alias(args.words[4]);
      ASSIGN_OR_RETURN(int64_t number, Number(args.words[5], "VERSION"));
      request.set_version(number);
      v1::Alias alias;
      RETURN_IF_ERROR(
          FromGrpc(client.registry().SetAlias(client.Context().get(), request, &alias)));
      if (format == OutputFormat::kJson) {
        out << PrintProtoJson(alias, true) << "\n";
      } else {
        out << alias.model() << "@" << alias.alias() << " -> version " << alias.version() << "\n";
      }
      return absl::OkStatus();
    }
    if (action == "history") {
      v1::GetAliasHistoryRequest request;
      request.set_model(args.words[3]);
      request.set_alias(args.words[4]);
      v1::GetAliasHistoryResponse history;
      RETURN_IF_ERROR(
          FromGrpc(client.registry().GetAliasHistory(client.Context().get(), request, &history)));
      if (format == OutputFormat::kJson) {
        out << PrintProtoJson(history, true) << "\n";
        return absl::OkStatus();
      }
      Table table({"TIME", "FROM", "TO", "BY"});
      for (const auto& m : history.moves()) {
        table.Add({Time(m.time()), m.from_version() ? std::to_string(m.from_version()) : "-",
                   std::to_string(m.to_version()), m.actor()});
      }
      out << table.Render();
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"model ", verb, "\" (see edgeloop --help)"));
}

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

absl::Status EnrollmentTokenCommand(const Args& args, Client& client, OutputFormat format,
                                    std::ostream& out) {
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
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(response, true) << "\n";
    } else {
      out << "enrollment token " << response.token().id() << " (" << response.token().max_uses()
          << " uses, expires " << Time(response.token().expire_time()) << "); shown only now:\n"
          << response.secret() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "list") {
    ASSIGN_OR_RETURN(auto response,
                     AllPages<v1::ListEnrollmentTokensResponse>(
                         v1::ListEnrollmentTokensRequest(), [&](const auto& r, auto* page) {
                           return FromGrpc(client.fleet().ListEnrollmentTokens(
                               client.Context().get(), r, page));
                         }));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(response, true) << "\n";
      return absl::OkStatus();
    }
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

void PrintDevices(const std::vector<const v1::Device*>& devices, std::ostream& out) {
  Table table({"ID", "STATUS", "ONLINE", "TARGET", "ARCH", "RAM MB", "LABELS", "LAST SEEN"});
  for (const v1::Device* d : devices) {
    table.Add({d->id(), d->status() == v1::ACTIVE ? "active" : "decommissioned",
               d->online() ? "yes" : "no",
               d->profile().target().empty() ? "-" : d->profile().target(), d->profile().arch(),
               std::to_string(d->profile().ram_mb()), Pairs(d->labels()),
               Time(d->last_seen_time())});
  }
  out << table.Render();
}

absl::Status DeviceCommand(const Args& args, Client& client, OutputFormat format,
                           std::ostream& out) {
  RETURN_IF_ERROR(Need(args, 2, "device list|show|label|decommission|assign|assignments ..."));
  const std::string& verb = args.words[1];
  if (verb == "list") {
    v1::ListDevicesRequest request;
    request.set_selector(args.Flag("selector"));
    ASSIGN_OR_RETURN(auto all,
                     AllPages<v1::ListDevicesResponse>(request, [&](const auto& r, auto* page) {
                       return FromGrpc(client.fleet().ListDevices(client.Context().get(), r, page));
                     }));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(all, true) << "\n";
      return absl::OkStatus();
    }
    std::vector<const v1::Device*> devices;
    for (const auto& d : all.devices()) devices.push_back(&d);
    PrintDevices(devices, out);
    return absl::OkStatus();
  }
  if (verb == "show") {
    RETURN_IF_ERROR(Need(args, 3, "device show ID"));
    v1::GetDeviceRequest request;
    request.set_id(args.words[2]);
    v1::Device device;
    RETURN_IF_ERROR(FromGrpc(client.fleet().GetDevice(client.Context().get(), request, &device)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(device, true) << "\n";
      return absl::OkStatus();
    }
    const v1::HardwareProfile& p = device.profile();
    Table table({"FIELD", "VALUE"});
    table.Add({"id", device.id()});
    table.Add({"serial", device.serial().empty() ? "-" : device.serial()});
    table.Add({"status", v1::DeviceStatus_Name(device.status())});
    table.Add({"online", device.online() ? "yes" : "no"});
    table.Add({"last seen", Time(device.last_seen_time())});
    table.Add({"enrolled", absl::StrCat(Time(device.enroll_time()), " with token ",
                                        device.enrollment_token_id())});
    table.Add({"certificate expires", Time(device.cert_expire_time())});
    table.Add({"labels", Pairs(device.labels())});
    table.Add({"target", p.target().empty() ? "-" : p.target()});
    table.Add({"cpu", absl::StrCat(p.arch(), ", ", p.cores(), " cores, ", p.cpu_model())});
    table.Add({"isa", absl::StrJoin(p.isa_features(), " ")});
    table.Add({"ram", absl::StrCat(p.ram_mb(), " MB")});
    table.Add({"storage", absl::StrCat(p.storage_mb(), " MB free of ", p.storage_total_mb())});
    for (const auto& a : p.accelerators())
      table.Add({"accelerator", absl::StrCat(a.kind(), " ", a.path())});
    table.Add({"os", absl::StrCat(p.os(), ", kernel ", p.kernel(), ", glibc ", p.glibc())});
    table.Add({"agent", device.state().agent_version().empty() ? p.agent_version()
                                                               : device.state().agent_version()});
    for (const auto& m : device.desired_modules()) {
      table.Add({"should run", absl::StrCat(m.model(), " v", m.version(), " (", m.target(), ", ",
                                            m.digest().substr(0, 19), ")")});
    }
    for (const auto& m : device.state().modules()) {
      table.Add(
          {"module", absl::StrCat(m.module().model(), " v", m.module().version(), " ", m.state())});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "assign") {
    v1::AssignModelRequest request;
    request.set_model(args.Flag("model"));
    request.set_selector(args.Flag("selector"));
    request.set_device_id(args.Flag("device"));
    request.set_alias(args.Flag("alias"));
    if (args.Has("version")) {
      ASSIGN_OR_RETURN(int64_t version, Number(args.Flag("version"), "--version"));
      request.set_version(version);
    }
    if (request.model().empty()) {
      return absl::InvalidArgumentError(
          "usage: device assign (--selector SEL | --device ID) --model M (--version V | --alias A)");
    }
    v1::Assignment a;
    RETURN_IF_ERROR(FromGrpc(client.fleet().AssignModel(client.Context().get(), request, &a)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(a, true) << "\n";
    } else {
      out << "assigned " << a.model() << " "
          << (a.alias().empty() ? absl::StrCat("version ", a.version())
                                : absl::StrCat("alias ", a.alias()))
          << " to " << (a.device_id().empty() ? "devices matching '" + a.selector() + "'"
                                              : "device " + a.device_id())
          << " (assignment " << a.id() << ")\n";
    }
    return absl::OkStatus();
  }
  if (verb == "rollback") {
    RETURN_IF_ERROR(Need(args, 3, "device rollback ID --model M"));
    v1::RollbackDeviceRequest request;
    request.set_id(args.words[2]);
    request.set_model(args.Flag("model"));
    v1::Assignment a;
    RETURN_IF_ERROR(FromGrpc(client.fleet().RollbackDevice(client.Context().get(), request, &a)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(a, true) << "\n";
    } else {
      out << "device " << a.device_id() << " goes back to " << a.model() << " version "
          << a.version() << " (assignment " << a.id() << ")\n";
    }
    return absl::OkStatus();
  }
  if (verb == "assignments") {
    v1::ListAssignmentsRequest request;
    request.set_model(args.Flag("model"));
    ASSIGN_OR_RETURN(
        auto response,
        AllPages<v1::ListAssignmentsResponse>(request, [&](const auto& r, auto* page) {
          return FromGrpc(client.fleet().ListAssignments(client.Context().get(), r, page));
        }));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(response, true) << "\n";
      return absl::OkStatus();
    }
    Table table({"ID", "MODEL", "VERSION", "DEVICES", "BY", "AT"});
    for (const auto& a : response.assignments()) {
      table.Add({std::to_string(a.id()), a.model(),
                 a.alias().empty() ? std::to_string(a.version()) : "@" + a.alias(),
                 a.device_id().empty() ? a.selector() : "id=" + a.device_id(), a.created_by(),
                 Time(a.create_time())});
    }
    out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "label") {
    RETURN_IF_ERROR(Need(args, 4, "device label ID key=value ... key- ..."));
    v1::UpdateDeviceRequest request;
    request.set_id(args.words[2]);
    for (size_t i = 3; i < args.words.size(); ++i) {
      const std::string& w = args.words[i];
      if (w.size() > 1 && w.back() == '-' && w.find('=') == std::string::npos) {
        request.add_remove_labels(w.substr(0, w.size() - 1));
        continue;
      }
      ASSIGN_OR_RETURN(auto pair, ParsePairs({w}, "label"));
      request.mutable_labels()->insert(pair.begin(), pair.end());
    }
    v1::Device device;
    RETURN_IF_ERROR(
        FromGrpc(client.fleet().UpdateDevice(client.Context().get(), request, &device)));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(device, true) << "\n";
    } else {
      out << device.id() << " labels: " << Pairs(device.labels()) << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "decommission") {
    RETURN_IF_ERROR(Need(args, 3, "device decommission ID"));
    v1::DecommissionDeviceRequest request;
    request.set_id(args.words[2]);
    v1::Device device;
    RETURN_IF_ERROR(
        FromGrpc(client.fleet().DecommissionDevice(client.Context().get(), request, &device)));
    out << "decommissioned " << device.id() << "; its certificate is no longer accepted\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"device ", verb, "\" (see edgeloop --help)"));
}

absl::Status TokenCommand(const Args& args, Client& client, OutputFormat format,
                          std::ostream& out) {
  RETURN_IF_ERROR(Need(args, 2, "token create|list|revoke ..."));
  const std::string& verb = args.words[1];
  if (args.Has("enroll")) return EnrollmentTokenCommand(args, client, format, out);
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
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(response, true) << "\n";
    } else {
      out << "token " << response.token().id() << " ("
          << absl::AsciiStrToLower(v1::Role_Name(response.token().role()))
          << ") created; its secret is shown only now:\n"
          << response.secret() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "list") {
    ASSIGN_OR_RETURN(auto response,
                     AllPages<v1::ListTokensResponse>(
                         v1::ListTokensRequest(), [&](const auto& r, auto* page) {
                           return FromGrpc(
                               client.admin().ListTokens(client.Context().get(), r, page));
                         }));
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(response, true) << "\n";
      return absl::OkStatus();
    }
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
    if (format == OutputFormat::kJson) {
      out << PrintProtoJson(token, true) << "\n";
    } else {
      out << "revoked token " << token.id() << " (" << token.name() << ")\n";
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"token ", verb, "\" (see edgeloop --help)"));
}

}  // namespace

const char* Usage() {
  return R"(usage: edgeloop [--server HOST:PORT] [--token-file FILE] [-o table|json] <noun> <verb> ...

  model create NAME [--description TEXT] [--label k=v ...]
  model push NAME FILE.onnx [--label k=v] [--metric k=v] [--parent N] [--training-run ID]
             [--dataset-digest sha256:...] [--source TEXT] [--validation FILE] [--calibration FILE]
  model list
  model show NAME [VERSION|ALIAS]
  model artifacts NAME VERSION        signed modules per target class, and compile jobs
  model alias set NAME ALIAS VERSION
  model alias history NAME ALIAS
  token create --name NAME --role viewer|operator|admin [--ttl 24h]
  token list
  token revoke ID
  token create --enroll [--labels k=v,...] [--max-uses N] [--ttl 24h]
  token list --enroll
  token revoke --enroll ID
  device list [--selector 'site=plant-3,hw.arch=aarch64,hw.ram_mb>=512']
  device show ID
  device label ID key=value ... key- ...
  device decommission ID
  device assign (--selector SEL | --device ID) --model M (--version V | --alias A)
                                      what devices should run; the newest assignment wins
  device assignments [--model M]
  device rollback ID --model M        back to the module the device kept as previous

--server defaults to $EDGELOOP_SERVER or 127.0.0.1:9090 (the operator gRPC port);
--token-file defaults to $EDGELOOP_TOKEN_FILE or ./var/admin.token.
)";
}

absl::Status RunCommand(const Args& args, Client& client, OutputFormat format, std::ostream& out) {
  if (args.words.empty())
    return absl::InvalidArgumentError("missing command (see edgeloop --help)");
  const std::string& noun = args.words[0];
  if (noun == "model") return ModelCommand(args, client, format, out);
  if (noun == "token") return TokenCommand(args, client, format, out);
  if (noun == "device") return DeviceCommand(args, client, format, out);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"", noun, "\" (see edgeloop --help)"));
}

}  // namespace edgeloop::cli
