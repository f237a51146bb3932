// Every name in a model is hostile: none of its bytes may reach the generated C except inside a
// string literal, the module must compute what it computed before, and the names it reports
// through the ABI must be the model's, byte for byte.
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/random.h"
#include "compiler/c_literal.h"
#include "compiler/compile.h"
#include "compiler/module_loader.h"
#include "compiler/onnx_import.h"
#include "gtest/gtest.h"
#include "onnx/onnx_pb.h"

namespace edgeloop::compiler {
namespace {

// Each payload carries the marker; if any of it escaped a string literal the marker shows up
// in the code (and the module would not compile or would compute something else).
constexpr char kMarker[] = "EL_PWNED";

std::vector<std::string> AcceptedHostileNames() {
  return {
      "*/ EL_PWNED(); /*",                                 // ends the comment it was written into
      "\"); EL_PWNED(); (\"",                              // ends the string literal
      "\\\"; EL_PWNED(); //",                              // a backslash, then a quote
      "EL_PWNED \\",                                       // a trailing backslash escapes the quote
      "?\?/\" EL_PWNED ?\?/",                              // trigraph for a backslash (ISO C modes)
      "?\?= ?\?( ?\?) ?\?' ?\?< ?\?> ?\?! ?\?- EL_PWNED",  // every other trigraph
      "#include </etc/passwd> EL_PWNED",                   // a preprocessor directive
      "\\x41\\101\\u0041 EL_PWNED",                        // escape sequences, as text
      "%s%n%x EL_PWNED",                                   // format directives
      "入力 EL_PWNED ü ∑",                                 // UTF-8 beyond ASCII
      "' EL_PWNED '",                                      // a character literal's quote
      std::string("EL_PWNED") + std::string(4091 - 8, 'x'),  // "relu " + it: the longest allowed
  };
}

std::vector<std::string> RefusedHostileNames() {
  return {
      "line\nEL_PWNED();",               // a newline ends a // comment
      "cr\rEL_PWNED",                    // carriage return
      "tab\tEL_PWNED",                   // other control characters
      std::string("nul\0EL_PWNED", 12),  // NUL
      "del\x7f"
      "EL_PWNED",                                            // DEL
      "\xff\xfe EL_PWNED",                                   // not UTF-8
      "\xc0\xaf EL_PWNED",                                   // overlong UTF-8 for '/'
      "\xed\xa0\x80 EL_PWNED",                               // a UTF-16 surrogate
      std::string("EL_PWNED") + std::string(4097 - 8, 'x'),  // longer than a name may be
  };
}

void Tensor4(onnx::ValueInfoProto* v, const std::string& name) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  t->mutable_shape()->add_dim()->set_dim_value(1);
  t->mutable_shape()->add_dim()->set_dim_value(4);
}

// Per name k: input name_k → Gemm (weights and bias named after it too; node named name_k) →
// intermediate named "mid " + name_k → Relu (node named name_k) → output "out " + name_k.
std::string ModelNamed(const std::vector<std::string>& names) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("hostile");
  for (size_t k = 0; k < names.size(); ++k) {
    const std::string& name = names[k];
    Tensor4(g->add_input(), name);
    auto* w = g->add_initializer();
    w->set_name(absl::StrCat("w ", name));
    w->set_data_type(onnx::TensorProto::FLOAT);
    w->add_dims(4);
    w->add_dims(4);
    for (int i = 0; i < 16; ++i) w->add_float_data(static_cast<float>((i * 7 + k) % 5) - 2.0f);
    auto* gemm = g->add_node();
    gemm->set_op_type("Gemm");
    gemm->set_name(name);
    gemm->add_input(name);
    gemm->add_input(absl::StrCat("w ", name));
    gemm->add_output(absl::StrCat("mid ", name));
    auto* relu = g->add_node();
    relu->set_op_type("Relu");
    relu->set_name(absl::StrCat("relu ", name));
    relu->add_input(absl::StrCat("mid ", name));
    relu->add_output(absl::StrCat("out ", name));
    Tensor4(g->add_output(), absl::StrCat("out ", name));
  }
  return m.SerializeAsString();
}

// The C source with every string and character literal's contents removed, and comments kept:
// what a C compiler would read as code or skip as comments.
std::string OutsideLiterals(const std::string& c) {
  std::string out;
  enum { kCode, kString, kChar, kLineComment, kBlockComment } state = kCode;
  for (size_t i = 0; i < c.size(); ++i) {
    const char ch = c[i];
    const char next = i + 1 < c.size() ? c[i + 1] : '\0';
    switch (state) {
      case kCode:
        out.push_back(ch);
        if (ch == '"') state = kString;
        if (ch == '\'') state = kChar;
        if (ch == '/' && next == '/') state = kLineComment;
        if (ch == '/' && next == '*') state = kBlockComment, out.push_back(c[++i]);
        break;
      case kString:
      case kChar:
        if (ch == '\\') {
          ++i;  // the escaped character is part of the literal
        } else if (ch == (state == kString ? '"' : '\'')) {
          out.push_back(ch);
          state = kCode;
        }
        break;
      case kLineComment:
        out.push_back(ch);
        if (ch == '\n') state = kCode;
        break;
      case kBlockComment:
        out.push_back(ch);
        if (ch == '*' && next == '/') out.push_back(c[++i]), state = kCode;
        break;
    }
  }
  return out;
}

TEST(CStringLiteralTest, OnlyHarmlessBytesPassThrough) {
  EXPECT_EQ(CStringLiteral("input_0"), "\"input_0\"");
  EXPECT_EQ(CStringLiteral("a\"b"), "\"a\\042b\"");
  EXPECT_EQ(CStringLiteral("a\\b"), "\"a\\134b\"");
  EXPECT_EQ(CStringLiteral("?\?/"), "\"\\077\\077/\"");
  EXPECT_EQ(CStringLiteral(std::string("\0"
                                       "1",
                                       2)),
            "\"\\0001\"");  // never "\01"
  EXPECT_EQ(CStringLiteral("\n"), "\"\\012\"");
  EXPECT_EQ(CStringLiteral("\xc3\xbc"), "\"\\303\\274\"");
}

TEST(HostileNamesTest, NoByteOfANameReachesTheCodeAndNamesRoundTrip) {
  const std::vector<std::string> names = AcceptedHostileNames();
  const std::string onnx = ModelNamed(names);
  CompileOptions options;
  options.target = "x86_64-v2";
  options.out_dir = ::testing::TempDir() + "/hostile-names-" + RandomHex(4);
  absl::StatusOr<CompileResult> compiled = CompileModel(onnx, options);
  ASSERT_TRUE(compiled.ok()) << compiled.status();

  absl::StatusOr<std::string> c = ReadFile(options.out_dir + "/module.c");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(absl::StrContains(*c, kMarker)) << "the names should be in the module's literals";
  const std::string code = OutsideLiterals(*c);
  EXPECT_FALSE(absl::StrContains(code, kMarker))
      << "a name reached the C source outside a string literal near: "
      << code.substr(code.find(kMarker) > 200 ? code.find(kMarker) - 200 : 0, 400);
  for (const char* fragment : {"#include </etc/passwd>", "%s%n", "?\?"}) {
    EXPECT_FALSE(absl::StrContains(code, fragment)) << fragment;
  }

  // The module computes what the reference interpreter does, and reports the model's names.
  absl::StatusOr<std::string> validation = ValidateModule(onnx, *compiled, options);
  ASSERT_TRUE(validation.ok()) << validation.status();
  absl::StatusOr<std::unique_ptr<LoadedModule>> module = LoadedModule::Load(compiled->so_path);
  ASSERT_TRUE(module.ok()) << module.status();
  const elm_module& m = (*module)->module();
  ASSERT_EQ(m.num_inputs, names.size());
  ASSERT_EQ(m.num_outputs, names.size());
  for (size_t k = 0; k < names.size(); ++k) {
    EXPECT_EQ(std::string(m.inputs[k].name), names[k]) << k;
    EXPECT_EQ(std::string(m.outputs[k].name), "out " + names[k]) << k;
  }
  EXPECT_EQ((*module)->SelfTest(), 0);
  // The manifest records the names JSON-escaped, never raw.
  EXPECT_TRUE(absl::StrContains(compiled->manifest_json, "\\\"); EL_PWNED(); (\\\""));
  EXPECT_FALSE(absl::StrContains(compiled->manifest_json, "\n"));
}

TEST(HostileNamesTest, ControlCharactersNonUtf8AndOverlongNamesAreRefused) {
  for (const std::string& name : RefusedHostileNames()) {
    SCOPED_TRACE(absl::CHexEscape(name.substr(0, 40)));
    absl::StatusOr<Graph> graph = ImportOnnx(ModelNamed({name}));
    ASSERT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument) << graph.status();
    const std::string message(graph.status().message());
    EXPECT_TRUE(absl::StrContains(message, "control character") ||
                absl::StrContains(message, "not valid UTF-8") ||
                absl::StrContains(message, "bytes long"))
        << message;
    // The refusal shows the name escaped: no raw control byte in an error message.
    for (const char ch : message) EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << message;
  }
}

TEST(HostileNamesTest, ExternalDataIsRefusedBeforeTheCheckerLooksForTheFile) {
  onnx::ModelProto m;
  m.ParseFromString(ModelNamed({"x"}));
  auto* w = m.mutable_graph()->mutable_initializer(0);
  w->clear_float_data();
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = w->add_external_data();
  entry->set_key("location");
  entry->set_value("../../../../etc/shadow");
  absl::StatusOr<Graph> graph = ImportOnnx(m.SerializeAsString());
  ASSERT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(graph.status().message(), "external file")) << graph.status();
}

}  // namespace
}  // namespace edgeloop::compiler
