// An application on the device: classifies feature vectors through the agent's local API.
//
//   classify --socket /var/lib/edgeloop/agent.sock --model kws 0.1,0.4,-0.2,...
//   classify --model kws --fill 0.5        (one input of the model's size, every value 0.5)
//
// prints "kws v3: class 2 (p=0.61) request 7f3a…" per vector given. The model's input shape
// comes from the agent (ListModels), so the same program serves any version it is swapped to.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "agent/client/local_client.h"

int main(int argc, char** argv) {
  std::string socket = "/var/lib/edgeloop/agent.sock", model, fill;
  std::vector<std::string> vectors;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--socket" && i + 1 < argc) {
      socket = argv[++i];
    } else if (arg == "--model" && i + 1 < argc) {
      model = argv[++i];
    } else if (arg == "--fill" && i + 1 < argc) {
      fill = argv[++i];
    } else {
      vectors.push_back(arg);
    }
  }
  if (model.empty() || (vectors.empty() && fill.empty())) {
    std::fprintf(stderr,
                 "usage: classify [--socket PATH] --model NAME (v1,v2,... [...] | --fill V)\n");
    return 2;
  }
  edgeloop::client::LocalClient client(socket);
  auto models = client.ListModels();
  if (!models.ok()) {
    std::fprintf(stderr, "classify: the agent does not answer: %s\n",
                 std::string(models.status().message()).c_str());
    return 1;
  }
  std::vector<int64_t> dims;
  for (const auto& m : models->models()) {
    if (m.name() == model && m.inputs_size() == 1)
      dims.assign(m.inputs(0).dims().begin(), m.inputs(0).dims().end());
  }
  if (dims.empty()) {
    std::fprintf(stderr, "classify: the agent serves no single-input model \"%s\"\n",
                 model.c_str());
    return 1;
  }
  if (!fill.empty()) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    std::string text = fill;
    for (int64_t k = 1; k < n; ++k) text += "," + fill;
    vectors.push_back(text);
  }
  for (const std::string& text : vectors) {
    edgeloop::client::FloatTensor input{"", dims, {}};
    for (absl::string_view v : absl::StrSplit(text, ',')) {
      float f = 0;
      if (!absl::SimpleAtof(v, &f)) {
        std::fprintf(stderr, "classify: \"%s\" is not a number\n", std::string(v).c_str());
        return 2;
      }
      input.values.push_back(f);
    }
    auto p = client.Predict(model, {input});
    if (!p.ok()) {
      std::fprintf(stderr, "classify: %s\n", std::string(p.status().message()).c_str());
      return 1;
    }
    const std::vector<float>& scores = p->outputs.at(0).values;
    size_t best = 0;
    for (size_t k = 1; k < scores.size(); ++k) best = scores[k] > scores[best] ? k : best;
    std::printf("%s v%lld: class %zu (p=%.2f) request %s\n", model.c_str(),
                static_cast<long long>(p->model_version), best, scores[best],
                p->request_id.c_str());
  }
  return 0;
}
