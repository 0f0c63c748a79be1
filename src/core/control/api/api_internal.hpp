// The pieces the API's dispatcher (api.cpp) and its route handlers (api_routes.cpp) share.
#pragma once

#include <nlohmann/json.hpp>
#include <span>

#include "core/control/api/api.hpp"

namespace tunnel::core::api {

using nlohmann::json;
using store::Id;
using store::Role;

// A field and what is wrong with it: {"field": "port", "problem": "..."}.
struct FieldError {
  std::string field;
  std::string problem;
};

// An RFC 9457 problem document. `slug` makes the type: "urn:tunnel:problem:<slug>".
ApiResponse problem(int status, std::string_view slug, std::string detail,
                    std::vector<FieldError> errors = {});
ApiResponse json_response(int status, const json& body);
// GET /api/v1/openapi.json.
ApiResponse openapi();

// Who is calling: the key, its user, the user's account and role there (narrowed by the
// key's own role), and whether that account is the operator account.
struct Principal {
  store::ApiKey key;
  store::User user;
  Role role = Role::kViewer;
  bool operator_account = false;
};

// True when `have` is at least as strong as `need` (owner > admin > member > viewer).
inline bool at_least(Role have, Role need) {
  return static_cast<int>(have) <= static_cast<int>(need);
}

struct Api::State {
  store::Store& store;
  ControlHooks& hooks;
  ApiOptions options;
  AuthLimiter limiter;
  struct Remembered {
    std::string scope;      // "key:ID POST /api/v1/tunnels"
    std::string body_hash;  // of the request body
    ApiResponse response;
    std::int64_t at = 0;
  };
  std::map<std::string, Remembered> idempotent;  // key: scope + "\n" + Idempotency-Key
  std::deque<std::string> idempotent_order;      // oldest first
  RealTimeSource real_time;                      // when options.time is null

  std::int64_t now() const;
  // For the failed-key throttle: options.time, else the real clock.
  MonotonicTime monotonic_now() const {
    return options.time != nullptr ? options.time->monotonic_time() : real_time.monotonic_time();
  }
};

// One call: the request, the caller, the path's ids and the query.
struct Call {
  const ApiRequest& request;
  Api::State& state;
  Principal who;
  std::vector<Id> ids;                       // the {id}s of the path, in order
  std::map<std::string, std::string> query;  // decoded; the last value of a repeated name

  store::Store& store() { return state.store; }
  // The caller's role on `account`: its own account's role, or the operator's on any account;
  // nullopt = the account is not the caller's (answer 404, never 403).
  std::optional<Role> role_on(Id account) const;
  // Appends an audit entry and tells the core that the store changed.
  void changed(std::string_view action, std::string_view object, const json& before,
               const json& after);
};

using Handler = ApiResponse (*)(Call&);
struct Route {
  std::string_view method;
  std::string_view pattern;  // "/api/v1/tunnels/{id}"; each {..} is a positive integer id
  Handler handler;
};
std::span<const Route> route_table();

// A JSON body checked field by field; every problem is collected, none stops the others.
class Fields {
 public:
  // The body as a JSON object; `error` set (400) when it is not one.
  static std::optional<json> parse(const std::string& body, std::optional<ApiResponse>& error);

  Fields(const json& object, std::vector<std::string_view> allowed);
  bool has(std::string_view name) const { return object_.contains(name); }
  bool is_null(std::string_view name) const { return has(name) && object_.at(name).is_null(); }
  std::optional<std::string> string(std::string_view name, bool required = false);
  std::optional<std::int64_t> integer(std::string_view name, std::int64_t min, std::int64_t max,
                                      bool required = false);
  std::optional<bool> boolean(std::string_view name);
  // A null id ("agent": null) is `clear`; an id is a positive integer.
  std::optional<Id> id(std::string_view name, bool& clear);
  void error(std::string field, std::string problem) {
    errors_.push_back({std::move(field), std::move(problem)});
  }
  bool ok() const { return errors_.empty(); }
  // 422 naming every field at fault.
  ApiResponse response() const;

 private:
  const json& object_;
  std::vector<FieldError> errors_;
};

// A store error as an answer, by its kind: conflict 409 (problem type "configured" for an
// object of the configuration file), not_found 404, invalid 422 (the field named when the
// message starts with "object.field"), anything else 500.
ApiResponse store_error(const common::Error& error);

// A list's ?limit= (1-1000, default 100) and ?cursor= (the last id of the previous page).
struct PageQuery {
  std::size_t limit = 100;
  Id after = 0;
};
std::optional<PageQuery> page_query(Call& call, std::optional<ApiResponse>& error);
// A page from the rows after the cursor, fetched with LIMIT limit + 1: at most `limit` items,
// with next_cursor when one more was there.
json page_of(std::vector<json> items, const PageQuery& q);
// A list page from every item (in id order): `items` after `cursor`, at most `limit`, with
// next_cursor when more follow. For short lists; long ones ask the store for one page.
json page(std::vector<json> items, Call& call, std::optional<ApiResponse>& error);

// The ETag of a representation: a quoted hash of its JSON.
std::string etag_of(const json& representation);

}  // namespace tunnel::core::api
