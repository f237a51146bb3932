// edgeloop model create|push|list|show|artifacts|alias.
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/table.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/status.h"
#include "google/protobuf/struct.pb.h"

namespace edgeloop::cli {
namespace {

constexpr size_t kUploadChunkBytes = 1 << 20;

// "set 8, acc 0.875, qemu" from an artifact's validation JSON.
std::string ValidationSummary(const std::string& json) {
  google::protobuf::Struct v;
  if (json.empty() || !ParseProtoJson(json, &v).ok()) return "-";
  const auto& f = v.fields();
  auto has = [&](const char* key) { return f.count(key) > 0; };
  std::string summary = absl::StrCat(
      has("inputs") && f.at("inputs").string_value() == "validation set" ? "set " : "generated ",
      has("samples") ? static_cast<int64_t>(f.at("samples").number_value()) : 0);
  if (has("accuracy"))
    absl::StrAppendFormat(&summary, ", acc %.3g", f.at("accuracy").number_value());
  if (has("emulated") && f.at("emulated").bool_value()) absl::StrAppend(&summary, ", qemu");
  return summary;
}

void PrintModels(const std::vector<const v1::Model*>& models, std::ostream& out) {
  Table table({"NAME", "LATEST", "ALIASES", "LABELS", "CREATED"});
  for (const v1::Model* m : models) {
    std::map<std::string, int64_t> aliases(m->aliases().begin(), m->aliases().end());
    table.Add({m->name(), m->latest_version() ? std::to_string(m->latest_version()) : "-",
               aliases.empty() ? "-" : absl::StrJoin(aliases, ",", absl::PairFormatter("=")),
               Pairs(m->labels()), Time(m->create_time())});
  }
  out << table.Render();
}

// "validation set, 256 samples, accuracy 0.918 (235/256)", or why there is none yet.
std::string ReferenceSummary(const v1::ModelVersion& v) {
  if (!v.has_reference()) {
    return v.validation_digest().empty() ? "none yet: from the first windows its devices send"
                                         : "none yet: computed when the version is compiled";
  }
  const v1::ReferenceStatistics& r = v.reference();
  std::string text = absl::StrCat(
      r.source() == v1::ReferenceStatistics::VALIDATION_SET ? "validation set" : "first windows",
      ", ", r.samples(), " samples");
  if (r.labelled() > 0) {
    absl::StrAppendFormat(&text, ", accuracy %.3f (%d/%d)",
                          static_cast<double>(r.correct()) / r.labelled(), r.correct(),
                          r.labelled());
  }
  return text;
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
  std::vector<std::string> monitored;
  for (const auto& f : v.monitored_features()) monitored.push_back(f.name());
  if (monitored.size() > 8) {
    monitored.resize(8);
    monitored.push_back(absl::StrCat("… (", v.monitored_features_size(), " in all)"));
  }
  table.Add({"monitored", monitored.empty() ? "-" : absl::StrJoin(monitored, " ")});
  table.Add({"reference", ReferenceSummary(v)});
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

}  // namespace

absl::Status ModelCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  std::ostream& out = c.out;
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
    return Print(c, model, [&] { out << "created model " << model.name() << "\n"; });
  }
  if (verb == "list") {
    ASSIGN_OR_RETURN(auto all, AllPages<v1::ListModelsResponse>(
                                   v1::ListModelsRequest(), [&](const auto& request, auto* page) {
                                     return FromGrpc(client.registry().ListModels(
                                         client.Context().get(), request, page));
                                   }));
    if (c.json()) return PrintJson(c, all);
    std::vector<const v1::Model*> models;
    for (auto& m : all.models()) models.push_back(&m);
    PrintModels(models, out);
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
      return Print(c, version, [&] { PrintVersion(version, out); });
    }
    v1::GetModelRequest get;
    get.set_model(args.words[2]);
    v1::Model model;
    RETURN_IF_ERROR(FromGrpc(client.registry().GetModel(client.Context().get(), get, &model)));
    v1::ListVersionsRequest list;
    list.set_model(model.name());
    ASSIGN_OR_RETURN(
        auto versions,
        AllPages<v1::ListVersionsResponse>(list, [&](const auto& request, auto* page) {
          return FromGrpc(client.registry().ListVersions(client.Context().get(), request, page));
        }));
    if (c.json()) {
      out << "{\"model\": " << PrintProtoJson(model, true)
          << ",\n\"versions\": " << PrintProtoJson(versions, true) << "}\n";
      return absl::OkStatus();
    }
    PrintModels({&model}, out);
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
        "[--dataset-digest sha256:...] [--source TEXT] [--validation FILE] [--calibration FILE] "
        "[--monitor FEATURE,...]"));
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
    // Features by name (docs/telemetry.md); the server checks them against the model's inputs.
    for (const absl::string_view name :
         absl::StrSplit(args.Flag("monitor"), ',', absl::SkipWhitespace())) {
      request.add_monitored_features()->set_name(std::string(absl::StripAsciiWhitespace(name)));
    }
    v1::ModelVersion version;
    RETURN_IF_ERROR(
        FromGrpc(client.registry().CreateVersion(client.Context(600).get(), request, &version)));
    return Print(c, version, [&] {
      out << "pushed " << version.model() << " version " << version.version() << " "
          << version.onnx_digest() << "\n";
    });
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
    if (c.json()) return PrintJson(c, response);
    std::map<std::string, const v1::Artifact*> built;
    for (const auto& a : response.artifacts()) built[a.target()] = &a;
    Table table({"TARGET", "JOB", "MODULE", "SIZE", "COMPILE S", "SIGNED", "VALIDATED", "NOTE"});
    for (const auto& j : response.jobs()) {
      const v1::Artifact* a = built.count(j.target()) ? built[j.target()] : nullptr;
      table.Add({j.target(), j.state(), a ? a->module_digest().substr(0, 19) : "-",
                 a ? std::to_string(a->module_size()) : "-",
                 a ? absl::StrFormat("%.2f", a->compile_seconds()) : "-",
                 a && !a->signature().empty() ? "ed25519" : "-",
                 a ? ValidationSummary(a->validation()) : "-",
                 j.error().empty() ? "-" : j.error().substr(0, 80)});
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
      return Print(c, alias, [&] {
        out << alias.model() << "@" << alias.alias() << " -> version " << alias.version() << "\n";
      });
    }
    if (action == "history") {
      v1::GetAliasHistoryRequest request;
      request.set_model(args.words[3]);
      request.set_alias(args.words[4]);
      v1::GetAliasHistoryResponse history;
      RETURN_IF_ERROR(
          FromGrpc(client.registry().GetAliasHistory(client.Context().get(), request, &history)));
      if (c.json()) return PrintJson(c, history);
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

}  // namespace edgeloop::cli
