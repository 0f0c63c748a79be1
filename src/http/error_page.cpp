#include "http/error_page.hpp"

namespace tunnel::http {
namespace {

void append_html_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
}

// A request id comes from our own generator or a client header; keep only visible ASCII so it
// can neither break the header block nor the page.
std::string sanitize_request_id(std::string_view id) {
  std::string out;
  for (char c : id) {
    if (c > ' ' && c < 0x7f) out.push_back(c);
  }
  return out;
}

}  // namespace

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 511:
      return "Network Authentication Required";
    default:
      return "";
  }
}

std::string error_response(int status, std::string_view detail, std::string_view request_id,
                           bool close_connection, std::string_view extra_headers) {
  if (status < 400 || status > 599) status = 500;
  std::string_view reason = reason_phrase(status);
  if (reason.empty()) reason = "Error";
  const std::string title = std::to_string(status) + " " + std::string(reason);
  const std::string id = sanitize_request_id(request_id);

  std::string body;
  body.reserve(512 + detail.size());
  body +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
  body += title;
  body +=
      "</title>\n<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem "
      "auto;padding:0 1rem;color:#222}h1{font-size:1.6rem}footer,.id{color:#777;font-size:"
      ".85rem}</style>\n</head>\n<body>\n<h1>";
  body += title;
  body += "</h1>\n";
  if (!detail.empty()) {
    body += "<p>";
    append_html_escaped(body, detail);
    body += "</p>\n";
  }
  if (!id.empty()) {
    body += "<p class=\"id\">Request ID: <code>";
    append_html_escaped(body, id);
    body += "</code></p>\n";
  }
  body += "<footer>tunnel</footer>\n</body>\n</html>\n";

  std::string out;
  out.reserve(256 + body.size());
  out += "HTTP/1.1 " + title + "\r\n";
  out += "Content-Type: text/html; charset=utf-8\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  out += extra_headers;
  if (!id.empty()) out += "X-Request-Id: " + id + "\r\n";
  if (close_connection) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string problem_response(int status, std::string_view problem, std::string_view request_id,
                             bool close_connection, std::uint64_t retry_after) {
  if (status < 400 || status > 599) status = 500;
  std::string_view reason = reason_phrase(status);
  if (reason.empty()) reason = "Error";
  const std::string id = sanitize_request_id(request_id);
  std::string out;
  out.reserve(256 + problem.size());
  out += "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  out += "Content-Type: application/problem+json\r\n";
  out += "Content-Length: " + std::to_string(problem.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  if (retry_after != 0) out += "Retry-After: " + std::to_string(retry_after) + "\r\n";
  if (!id.empty()) out += "X-Request-Id: " + id + "\r\n";
  if (close_connection) out += "Connection: close\r\n";
  out += "\r\n";
  out += problem;
  return out;
}

}  // namespace tunnel::http
