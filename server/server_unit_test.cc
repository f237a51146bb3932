#include "gtest/gtest.h"
#include "server/options.h"
#include "server/rest/router.h"

namespace edgeloop::server {
namespace {

TEST(RouterTest, MatchesTemplatesAndVerbs) {
  rest::Router router;
  router.Add("GET", "/v1/models/{model}/versions/{version}", rest::RouteKind::kJson);
  router.Add("POST", "/v1/tokens/{id}:revoke", rest::RouteKind::kJson);
  auto m = router.Find("GET", "/v1/models/det%2Dx/versions/3");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params["model"], "det-x");
  EXPECT_EQ(m.params["version"], "3");
  auto revoke = router.Find("POST", "/v1/tokens/abc123:revoke");
  ASSERT_NE(revoke.route, nullptr);
  EXPECT_EQ(revoke.params["id"], "abc123");
  EXPECT_EQ(router.Find("POST", "/v1/tokens/abc123").route, nullptr);
  auto wrong_method = router.Find("DELETE", "/v1/models/a/versions/1");
  EXPECT_EQ(wrong_method.route, nullptr);
  EXPECT_TRUE(wrong_method.other_method);
}

TEST(RouterTest, QueryDecoding) {
  auto q = rest::ParseQuery("pageToken=a%20b&pageSize=5&x=1+2");
  EXPECT_EQ(q["pageToken"], "a b");
  EXPECT_EQ(q["pageSize"], "5");
  EXPECT_EQ(q["x"], "1 2");
  EXPECT_EQ(rest::PercentDecode("a+b"), "a+b");
}

TEST(OptionsTest, FlagsBeatEnvironmentAndDefaultsDeriveFromDataDir) {
  setenv("EDGELOOP_HTTP_LISTEN", "127.0.0.1:1", 1);
  setenv("EDGELOOP_GRPC_LISTEN", "127.0.0.1:2", 1);
  bool help = false;
  auto o = ParseServerOptions({"--data-dir", "/tmp/el", "--grpc-listen=127.0.0.1:0"}, &help);
  unsetenv("EDGELOOP_HTTP_LISTEN");
  unsetenv("EDGELOOP_GRPC_LISTEN");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->http_listen, "127.0.0.1:1");
  EXPECT_EQ(o->grpc_listen, "127.0.0.1:0");
  EXPECT_EQ(o->db, "sqlite:///tmp/el/edgeloop.db");
  EXPECT_EQ(o->blobs, "file:///tmp/el/blobs");
  EXPECT_FALSE(ParseServerOptions({"--no-such-flag", "1"}, &help).ok());
  EXPECT_FALSE(ParseServerOptions({"--max-upload-bytes", "lots"}, &help).ok());
  EXPECT_FALSE(ParseServerOptions({"--db"}, &help).ok());
}

}  // namespace
}  // namespace edgeloop::server
