//! `GET /`: the observer page, a plain HTML view of what this node reports (design section 6).
//!
//! It shows the same facts as `/v1/status` and `/v1/head` (role, term, leader, applied index, state
//! digest, every election's phase and ballot count, the cluster's members with links to their own pages)
//! so an observer can open every node side by side and compare digests, with no script and no secret.
//! The page refreshes itself every 5 s. For a machine check use `urna observe`.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::status::role_name;
use super::{ApiError, AppState};

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// `GET /`
pub async fn page(State(app): State<AppState>) -> Result<Response, ApiError> {
    let m = app.raft.metrics().borrow().clone();
    let st = app.store.state().map_err(ApiError::internal)?;
    let elections = crate::election::view::briefs(&app.store)?;
    let mut rows = String::new();
    for e in &elections {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/v1/elections/{id}\">summary</a> · \
             <a href=\"/v1/elections/{id}/result\">result</a> · <a href=\"/v1/elections/{id}/events\">audit \
             trail</a> · <a href=\"/v1/elections/{id}/record\">record</a></td></tr>",
            esc(&e.election_id),
            esc(&e.phase.to_string()),
            e.ballot_count,
            id = esc(&e.election_id),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"4\">no election yet</td></tr>");
    }
    let mut members = String::new();
    for (id, node) in m.membership_config.membership().nodes() {
        let addr = esc(&node.addr);
        let url = if node.addr.starts_with("http") {
            addr.clone()
        } else {
            format!("http://{addr}")
        };
        let marks = match (Some(*id) == m.current_leader, *id == app.id) {
            (true, true) => " (leader, this node)",
            (true, false) => " (leader)",
            (false, true) => " (this node)",
            _ => "",
        };
        members.push_str(&format!(
            "<li><a href=\"{url}/\">node {id}</a> {addr}{marks}</li>"
        ));
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>Urna node {id}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}td,th{{padding:.2em .8em;\
         text-align:left}}code{{word-break:break-all}}</style></head><body>\
         <h1>Urna node {id}</h1>\
         <p>Role <b>{role}</b>, term {term}, leader {leader}. Applied index <b>{applied}</b>, last log index \
         {last}.</p><p>State digest at the applied index:<br><code>{digest}</code></p>\
         <p>Every node of the cluster must report the same digest at the same index: open each member's page, \
         or run <code>urna observe</code>. Signed head: <a href=\"/v1/head\">/v1/head</a>; status: \
         <a href=\"/v1/status\">/v1/status</a>; metrics: <a href=\"/metrics\">/metrics</a>.</p>\
         <h2>Elections</h2><table><tr><th>election</th><th>phase</th><th>ballots</th><th></th></tr>{rows}\
         </table><h2>Cluster members</h2><ul>{members}</ul></body></html>",
        id = app.id,
        role = role_name(m.state),
        term = m.current_term,
        leader = m.current_leader.map_or_else(|| "unknown".to_string(), |l| format!("node {l}")),
        applied = opt(st.last_applied.map(|l| l.index)),
        last = opt(m.last_log_index),
        digest = hex::encode(st.digest),
    );
    Ok(Html(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
