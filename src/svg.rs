//! What every SVG this tool writes (heat map, experiment plots, before/after plot) shares: text
//! escaping for labels that come from tensor, task and data-set names.

/// Escapes `s` for SVG text and attribute values (`&`, `<`, `>`, `"`).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
