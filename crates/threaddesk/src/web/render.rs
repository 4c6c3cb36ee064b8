//! Message markdown → safe HTML, the way Mattermost renders it.
//!
//! Message text is untrusted. Safety does not come from sanitising HTML after the fact but from
//! never producing unsafe HTML in the first place:
//! - `pulldown-cmark` parses; this module writes every tag itself from a fixed set
//!   ([`ALLOWED_TAGS`]) with a fixed set of attributes ([`ALLOWED_ATTRS`]);
//! - raw HTML in the message (block or inline) is emitted as escaped text;
//! - every text and attribute value goes through [`escape`];
//! - link targets pass a scheme allow-list (`http`, `https`, `mailto`, relative), with control
//!   characters and whitespace refused, so `jav&#x09;ascript:` cannot sneak through;
//! - images are only `<img>` when they are Mattermost files, rewritten to ThreadDesk's proxy path
//!   (`/media/files/{id}`); any other image becomes a plain link (no outbound load, CSP-clean);
//! - no `style` attributes (table alignment is a class), so the strict CSP holds.
//!
//! Mattermost flavour: a single newline is a line break, bare URLs are linked, `:shortcode:`
//! emoji (built-in table in `emoji.tsv`, plus the server's custom emoji), `@mentions` and
//! `@channel`/`@here`/`@all` are highlighted (mentions of the viewer get an extra class).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use pulldown_cmark::{Alignment, CodeBlockKind, Event, LinkType, Options, Parser, Tag, TagEnd};

/// Tags the renderer can emit. Tests assert that nothing else ever appears.
pub const ALLOWED_TAGS: &[&str] = &[
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "span",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
];

/// Attributes the renderer can emit.
pub const ALLOWED_ATTRS: &[&str] = &[
    "alt",
    "class",
    "data-mention",
    "href",
    "loading",
    "rel",
    "src",
    "start",
    "target",
    "title",
];

/// What the renderer needs to know about the viewer and the server.
#[derive(Debug, Clone, Default)]
pub struct RenderCtx {
    /// The signed-in user's username (without `@`): mentions of it get `mention-me`.
    pub username: String,
    /// Custom emoji name → ThreadDesk image path (`/media/emoji/{id}`).
    pub custom_emoji: HashMap<String, String>,
    /// The Mattermost site URL (`https://mm.example.com`), without a trailing slash. Links to it
    /// stay links; Mattermost file URLs on it become proxied images; relative links resolve to it.
    pub site_url: String,
}

impl RenderCtx {
    /// A context for `username` on `site_url`, without custom emoji.
    pub fn new(username: impl Into<String>, site_url: impl Into<String>) -> Self {
        let site_url: String = site_url.into();
        Self {
            username: username.into(),
            custom_emoji: HashMap::new(),
            site_url: site_url.trim_end_matches('/').to_owned(),
        }
    }
}

/// A built-in `:shortcode:` → Unicode emoji, if known (used for reactions too).
pub fn emoji_glyph(name: &str) -> Option<&'static str> {
    EMOJI.get(name).copied()
}

static EMOJI: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    include_str!("emoji.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(name, glyph)| (name.trim(), glyph.trim()))
        .filter(|(name, glyph)| !name.is_empty() && !glyph.is_empty())
        .collect()
});

/// Renders one message's markdown to HTML that is safe to insert into a page.
pub fn render_message(text: &str, ctx: &RenderCtx) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    // Deliberately NOT enabled: heading attributes (`{#id .class}` would let authors set
    // attributes), footnotes, math, smart punctuation, wikilinks, metadata blocks.
    let mut w = Writer {
        ctx,
        out: String::with_capacity(text.len() * 3 / 2 + 16),
        pending: String::new(),
        links: Vec::new(),
        images: Vec::new(),
        in_code_block: false,
        table_alignments: Vec::new(),
        table_cell: 0,
        in_table_head: false,
    };
    for event in Parser::new_ext(text, options) {
        w.event(event);
    }
    w.flush_text();
    // Unbalanced output is impossible by construction, but close anything left open.
    while let Some(open) = w.links.pop() {
        if open {
            w.out.push_str("</a>");
        }
    }
    w.out
}

/// Escapes text for HTML body and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// How an image being rendered is shown.
enum ImageMode {
    /// A Mattermost file through ThreadDesk's proxy: `<img>`, alt text collected here.
    Proxied { src: String, alt: String },
    /// Any other image: a link whose text is the alt text (already opened).
    Link,
    /// Not linkable (unsafe URL, or already inside a link): alt text only.
    Text,
}

struct Writer<'c> {
    ctx: &'c RenderCtx,
    out: String,
    /// Consecutive text events, processed together (pulldown-cmark splits text at `_`, `:` …).
    pending: String,
    /// One entry per open link: whether an `<a>` was emitted for it.
    links: Vec<bool>,
    images: Vec<ImageMode>,
    in_code_block: bool,
    table_alignments: Vec<Alignment>,
    table_cell: usize,
    in_table_head: bool,
}

impl Writer<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Text(t) => self.pending.push_str(&t),
            // Raw HTML is shown as the text the author typed.
            Event::Html(t) | Event::InlineHtml(t) => self.pending.push_str(&t),
            Event::Code(t) => {
                self.flush_text();
                if let Some(ImageMode::Proxied { alt, .. }) = self.images.last_mut() {
                    alt.push_str(&t);
                } else {
                    self.out.push_str("<code>");
                    escape_into(&mut self.out, &t);
                    self.out.push_str("</code>");
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                self.flush_text();
                if let Some(ImageMode::Proxied { alt, .. }) = self.images.last_mut() {
                    alt.push(' ');
                } else {
                    self.out.push_str("<br>\n");
                }
            }
            Event::Rule => {
                self.flush_text();
                self.out.push_str("<hr>\n");
            }
            Event::Start(tag) => {
                self.flush_text();
                self.start(tag);
            }
            Event::End(tag) => {
                self.flush_text();
                self.end(tag);
            }
            // Not enabled in the options (footnotes, task lists, math): show nothing unsafe.
            Event::FootnoteReference(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                self.pending.push_str(&t);
            }
            Event::TaskListMarker(_) => {}
        }
    }

    fn in_proxied_image(&self) -> bool {
        matches!(self.images.last(), Some(ImageMode::Proxied { .. }))
    }

    fn start(&mut self, tag: Tag<'_>) {
        if let Some(ImageMode::Proxied { .. }) = self.images.last() {
            // Inside an image's alt text only text matters; nested images add their alt text.
            if let Tag::Image { .. } = tag {
                self.images.push(ImageMode::Text);
            }
            return;
        }
        match tag {
            Tag::Paragraph => self.out.push_str("<p>"),
            Tag::Heading { level, .. } => {
                let _ = write!(self.out, "<{level}>");
            }
            Tag::BlockQuote(_) => self.out.push_str("<blockquote>\n"),
            Tag::CodeBlock(kind) => {
                self.in_code_block = true;
                let lang = match &kind {
                    CodeBlockKind::Fenced(info) => info
                        .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
                        .next()
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
                        .take(32)
                        .collect::<String>(),
                    CodeBlockKind::Indented => String::new(),
                };
                if lang.is_empty() {
                    self.out.push_str("<pre><code>");
                } else {
                    let _ = write!(self.out, "<pre><code class=\"language-{lang}\">");
                }
            }
            // Raw HTML blocks are shown as text in a paragraph.
            Tag::HtmlBlock => self.out.push_str("<p class=\"raw-html\">"),
            Tag::List(Some(1)) => self.out.push_str("<ol>\n"),
            Tag::List(Some(start)) => {
                let _ = writeln!(self.out, "<ol start=\"{start}\">");
            }
            Tag::List(None) => self.out.push_str("<ul>\n"),
            Tag::Item => self.out.push_str("<li>"),
            Tag::Table(alignments) => {
                self.table_alignments = alignments;
                self.out.push_str("<div class=\"table-wrap\"><table>");
            }
            Tag::TableHead => {
                self.in_table_head = true;
                self.table_cell = 0;
                self.out.push_str("<thead><tr>");
            }
            Tag::TableRow => {
                self.table_cell = 0;
                self.out.push_str("<tr>");
            }
            Tag::TableCell => {
                let cell = if self.in_table_head { "th" } else { "td" };
                let class = match self.table_alignments.get(self.table_cell) {
                    Some(Alignment::Left) => " class=\"align-left\"",
                    Some(Alignment::Center) => " class=\"align-center\"",
                    Some(Alignment::Right) => " class=\"align-right\"",
                    _ => "",
                };
                let _ = write!(self.out, "<{cell}{class}>");
            }
            Tag::Emphasis => self.out.push_str("<em>"),
            Tag::Strong => self.out.push_str("<strong>"),
            Tag::Strikethrough => self.out.push_str("<del>"),
            Tag::Link {
                link_type,
                dest_url,
                title,
                ..
            } => {
                let href = if link_type == LinkType::Email {
                    safe_href(&format!("mailto:{dest_url}"), self.ctx)
                } else {
                    safe_href(&dest_url, self.ctx)
                };
                // A link inside a link is not valid HTML: keep only the outer one.
                let emit = href.is_some() && !self.links.iter().any(|open| *open);
                if let (true, Some(href)) = (emit, href) {
                    self.open_link(&href, &title, "");
                }
                self.links.push(emit);
            }
            Tag::Image {
                dest_url, title, ..
            } => {
                if let Some(src) = proxied_image_src(&dest_url, self.ctx) {
                    let _ = title;
                    self.images.push(ImageMode::Proxied {
                        src,
                        alt: String::new(),
                    });
                } else if let (Some(href), false) = (
                    safe_href(&dest_url, self.ctx),
                    self.links.iter().any(|open| *open),
                ) {
                    self.open_link(&href, &title, "external-image");
                    self.out
                        .push_str("<span class=\"external-image-icon\">🖼</span> ");
                    self.images.push(ImageMode::Link);
                } else {
                    self.images.push(ImageMode::Text);
                }
            }
            // Options for these are not enabled; keep the writer total anyway.
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        if self.in_proxied_image() {
            if tag != TagEnd::Image {
                return;
            }
            if let Some(ImageMode::Proxied { src, alt }) = self.images.pop() {
                let alt = alt.trim();
                let _ = write!(
                    self.out,
                    "<a href=\"{src}\" target=\"_blank\" rel=\"noopener noreferrer\">\
                     <img class=\"md-image\" src=\"{src}\" alt=\"{a}\" title=\"{a}\" loading=\"lazy\"></a>",
                    src = escape(&src),
                    a = escape(alt),
                );
            }
            return;
        }
        match tag {
            TagEnd::Paragraph => self.out.push_str("</p>\n"),
            TagEnd::Heading(level) => {
                let _ = writeln!(self.out, "</{level}>");
            }
            TagEnd::BlockQuote(_) => self.out.push_str("</blockquote>\n"),
            TagEnd::CodeBlock => {
                self.in_code_block = false;
                self.out.push_str("</code></pre>\n");
            }
            TagEnd::HtmlBlock => self.out.push_str("</p>\n"),
            TagEnd::List(true) => self.out.push_str("</ol>\n"),
            TagEnd::List(false) => self.out.push_str("</ul>\n"),
            TagEnd::Item => self.out.push_str("</li>\n"),
            TagEnd::Table => self.out.push_str("</tbody></table></div>\n"),
            TagEnd::TableHead => {
                self.in_table_head = false;
                self.out.push_str("</tr></thead><tbody>");
            }
            TagEnd::TableRow => self.out.push_str("</tr>"),
            TagEnd::TableCell => {
                self.out
                    .push_str(if self.in_table_head { "</th>" } else { "</td>" });
                self.table_cell += 1;
            }
            TagEnd::Emphasis => self.out.push_str("</em>"),
            TagEnd::Strong => self.out.push_str("</strong>"),
            TagEnd::Strikethrough => self.out.push_str("</del>"),
            TagEnd::Link => {
                let emitted = self.links.pop().unwrap_or(false);
                if emitted {
                    self.out.push_str("</a>");
                }
            }
            TagEnd::Image => {
                if let Some(ImageMode::Link) = self.images.pop() {
                    self.out.push_str("</a>");
                }
            }
            _ => {}
        }
    }

    fn open_link(&mut self, href: &str, title: &str, class: &str) {
        self.out.push_str("<a href=\"");
        escape_into(&mut self.out, href);
        self.out.push('"');
        if !title.is_empty() {
            self.out.push_str(" title=\"");
            escape_into(&mut self.out, title);
            self.out.push('"');
        }
        if !class.is_empty() {
            let _ = write!(self.out, " class=\"{class}\"");
        }
        if !href.starts_with("mailto:") {
            self.out
                .push_str(" target=\"_blank\" rel=\"noopener noreferrer nofollow\"");
        }
        self.out.push('>');
    }

    /// Writes the buffered text: escaped, with mentions, emoji and bare URLs decorated
    /// (outside code blocks), or into the alt text of a proxied image.
    fn flush_text(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        if let Some(ImageMode::Proxied { alt, .. }) = self.images.last_mut() {
            alt.push_str(&text);
        } else if self.in_code_block {
            escape_into(&mut self.out, &text);
        } else {
            let autolink = !self.links.iter().any(|open| *open) && self.images.is_empty();
            self.decorate(&text, autolink);
        }
    }

    fn decorate(&mut self, text: &str, autolink: bool) {
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut plain_from = 0;
        while i < bytes.len() {
            let prev_is_word = i > 0 && is_word_byte(bytes[i - 1]);
            let consumed = match bytes[i] {
                b'@' if !prev_is_word => self.mention(&text[i..]),
                b':' => self.emoji(&text[i..]),
                b'h' | b'w' | b'H' | b'W' if autolink && !prev_is_word => self.bare_url(&text[i..]),
                _ => None,
            };
            match consumed {
                Some((len, html)) => {
                    escape_into(&mut self.out, &text[plain_from..i]);
                    self.out.push_str(&html);
                    i += len;
                    plain_from = i;
                }
                None => i += 1,
            }
            // Stay on a char boundary.
            while i < bytes.len() && !text.is_char_boundary(i) {
                i += 1;
            }
        }
        escape_into(&mut self.out, &text[plain_from..]);
    }

    /// `@name` at the start of `s` → (bytes consumed, html).
    fn mention(&self, s: &str) -> Option<(usize, String)> {
        let name_len = s[1..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            .count();
        // A trailing dot ends the sentence, not the username.
        let name = s[1..1 + name_len].trim_end_matches('.');
        if name.is_empty() || !name.as_bytes()[0].is_ascii_alphanumeric() {
            return None;
        }
        let lower = name.to_ascii_lowercase();
        let class = if matches!(lower.as_str(), "channel" | "here" | "all") {
            "mention mention-group mention-me"
        } else if !self.ctx.username.is_empty() && lower.eq_ignore_ascii_case(&self.ctx.username) {
            "mention mention-me"
        } else {
            "mention"
        };
        let html = format!(
            "<span class=\"{class}\" data-mention=\"{n}\">@{n}</span>",
            n = escape(name)
        );
        Some((1 + name.len(), html))
    }

    /// `:name:` at the start of `s` → (bytes consumed, html), for known emoji only.
    fn emoji(&self, s: &str) -> Option<(usize, String)> {
        let name_len = s[1..]
            .bytes()
            .take(64)
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
            .count();
        if name_len == 0 || s.as_bytes().get(1 + name_len) != Some(&b':') {
            return None;
        }
        let name = &s[1..1 + name_len];
        let html = if let Some(glyph) = emoji_glyph(name) {
            format!(
                "<span class=\"emoji\" title=\":{n}:\">{glyph}</span>",
                n = escape(name)
            )
        } else if let Some(path) = self.ctx.custom_emoji.get(name) {
            format!(
                "<img class=\"emoji\" src=\"{p}\" alt=\":{n}:\" title=\":{n}:\">",
                p = escape(path),
                n = escape(name)
            )
        } else {
            return None;
        };
        Some((name_len + 2, html))
    }

    /// A bare `http(s)://…` or `www.…` URL at the start of `s` → (bytes consumed, html).
    fn bare_url(&self, s: &str) -> Option<(usize, String)> {
        let lower: String = s.chars().take(8).collect::<String>().to_ascii_lowercase();
        let prefix_ok = lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.");
        if !prefix_ok {
            return None;
        }
        let mut end = s
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
            .map_or(s.len(), |(i, _)| i);
        // Trailing punctuation belongs to the sentence; a closing paren only if unbalanced.
        while let Some(last) = s[..end].chars().next_back() {
            let trim = match last {
                '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' | '_' | '~' => true,
                ')' => s[..end].matches(')').count() > s[..end].matches('(').count(),
                _ => false,
            };
            if !trim {
                break;
            }
            end -= last.len_utf8();
        }
        let url = &s[..end];
        let host_part = url.split_once("://").map_or(url, |(_, rest)| rest);
        if host_part.len() < 4 || !host_part.contains('.') && !host_part.contains("localhost") {
            return None;
        }
        let href = if lower.starts_with("www.") {
            format!("http://{url}")
        } else {
            url.to_owned()
        };
        let href = safe_href(&href, self.ctx)?;
        let html = format!(
            "<a href=\"{h}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">{t}</a>",
            h = escape(&href),
            t = escape(url)
        );
        Some((end, html))
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The href to emit for a link target, or `None` when it must not be a link.
///
/// Allowed: `http:`, `https:`, `mailto:`, fragment-only and relative references (relative paths
/// resolve against the Mattermost site, where the author meant them). Refused: any other scheme,
/// and anything containing whitespace or control characters (browsers strip those inside
/// schemes, which is how `jav&#x09;ascript:` tricks work).
pub fn safe_href(url: &str, ctx: &RenderCtx) -> Option<String> {
    let url = url.trim_matches(|c: char| c == ' ');
    if url.is_empty() || url.len() > 4096 {
        return None;
    }
    if url
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\u{feff}' || c == '\\')
    {
        return None;
    }
    // A scheme is everything before the first ':' if no '/', '?' or '#' comes earlier.
    let scheme_end = url.find(':');
    let first_delim = url.find(['/', '?', '#']);
    let scheme = match (scheme_end, first_delim) {
        (Some(c), Some(d)) if d < c => None,
        (Some(c), _) => Some(&url[..c]),
        (None, _) => None,
    };
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {
            // Needs a host: `http:/x` or `https:` alone are not useful links.
            url[scheme_end.unwrap_or(0) + 1..]
                .starts_with("//")
                .then(|| url.to_owned())
        }
        Some("mailto") => Some(url.to_owned()),
        Some(_) => None,
        None => {
            if url.starts_with('#') {
                Some(url.to_owned())
            } else if url.starts_with("//") {
                // Protocol-relative: an ordinary external link.
                Some(format!("https:{url}"))
            } else if let Some(path) = url.strip_prefix('/') {
                if ctx.site_url.is_empty() {
                    Some(url.to_owned())
                } else {
                    Some(format!("{}/{path}", ctx.site_url))
                }
            } else if ctx.site_url.is_empty() {
                Some(url.to_owned())
            } else {
                Some(format!("{}/{url}", ctx.site_url))
            }
        }
    }
}

/// ThreadDesk's proxy path for a Mattermost file image URL (`{site}/api/v4/files/{id}[/preview|
/// /thumbnail]`, absolute on the configured site or site-relative), else `None`.
pub fn proxied_image_src(url: &str, ctx: &RenderCtx) -> Option<String> {
    let path = if let Some(rest) = url.strip_prefix("/api/v4/files/") {
        rest
    } else if !ctx.site_url.is_empty() {
        url.strip_prefix(ctx.site_url.as_str())?
            .strip_prefix("/api/v4/files/")?
    } else {
        return None;
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut parts = path.split('/');
    let id = parts.next()?;
    let variant = parts.next();
    if parts.next().is_some() || !is_mattermost_id(id) {
        return None;
    }
    match variant {
        None | Some("") | Some("preview") => Some(format!("/media/files/{id}")),
        Some("thumbnail") => Some(format!("/media/files/{id}/thumbnail")),
        Some(_) => None,
    }
}

/// Mattermost ids are 26 lowercase base32 characters.
fn is_mattermost_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RenderCtx {
        let mut c = RenderCtx::new("alice", "https://mm.example.com");
        c.custom_emoji
            .insert("parrot".into(), "/media/emoji/abc123".into());
        c
    }

    fn r(s: &str) -> String {
        render_message(s, &ctx())
    }

    #[test]
    fn paragraphs_and_single_newline_break() {
        assert_eq!(r("a\nb\n\nc"), "<p>a<br>\nb</p>\n<p>c</p>\n");
    }

    #[test]
    fn inline_formatting() {
        let h = r("**b** *i* ~~s~~ `c<d>`");
        assert!(h.contains("<strong>b</strong>"), "{h}");
        assert!(h.contains("<em>i</em>"), "{h}");
        assert!(h.contains("<del>s</del>"), "{h}");
        assert!(h.contains("<code>c&lt;d&gt;</code>"), "{h}");
    }

    #[test]
    fn fenced_code_keeps_text_and_language() {
        let h = r("```rust\nlet x = \"<b>\"; // @alice :smile:\n```");
        assert!(
            h.contains("<pre><code class=\"language-rust\">let x = &quot;&lt;b&gt;&quot;;"),
            "{h}"
        );
        assert!(!h.contains("mention"), "{h}");
        assert!(h.contains(":smile:"), "{h}");
        let h = r("```js\" onmouseover=\"x\nfoo\n```");
        assert!(h.contains("<pre><code class=\"language-js\">foo"), "{h}");
    }

    #[test]
    fn headings_quotes_lists() {
        let h = r("# Title\n\n> quoted\n\n- a\n- b\n\n3. c\n4. d");
        assert!(h.contains("<h1>Title</h1>"), "{h}");
        assert!(h.contains("<blockquote>\n<p>quoted</p>"), "{h}");
        assert!(h.contains("<ul>\n<li>a</li>"), "{h}");
        assert!(h.contains("<ol start=\"3\">"), "{h}");
    }

    #[test]
    fn heading_attributes_are_not_parsed() {
        let h = r("# Title {#x .y onclick=alert(1)}");
        assert!(
            h.starts_with("<h1>Title {#x .y onclick=alert(1)}</h1>"),
            "{h}"
        );
    }

    #[test]
    fn tables_use_classes_not_styles() {
        let h = r("| a | b |\n|:--|--:|\n| 1 | 2 |");
        assert!(
            h.contains("<table><thead><tr><th class=\"align-left\">a</th>"),
            "{h}"
        );
        assert!(h.contains("<td class=\"align-right\">2</td>"), "{h}");
        assert!(!h.contains("style"), "{h}");
    }

    #[test]
    fn links_have_safe_targets() {
        let h = r("[site](https://example.com \"T\")");
        assert_eq!(
            h,
            "<p><a href=\"https://example.com\" title=\"T\" target=\"_blank\" \
             rel=\"noopener noreferrer nofollow\">site</a></p>\n"
        );
        assert!(r("[x](javascript:alert(1))").contains("<p>x</p>"));
        assert!(r("[x](/team/pl/abc)").contains("href=\"https://mm.example.com/team/pl/abc\""));
        assert!(r("<mailto:bob@example.com>").contains("href=\"mailto:bob@example.com\""));
        assert!(r("<bob@example.com>").contains("href=\"mailto:bob@example.com\""));
    }

    #[test]
    fn bare_urls_are_linked() {
        let h = r("see https://example.com/a_b?c=d. and www.rust-lang.org, (http://x.org/y)");
        assert!(h.contains("<a href=\"https://example.com/a_b?c=d\""), "{h}");
        assert!(h.contains(">https://example.com/a_b?c=d</a>."), "{h}");
        assert!(h.contains("href=\"http://www.rust-lang.org\""), "{h}");
        assert!(h.contains("href=\"http://x.org/y\""), "{h}");
        assert!(h.contains("</a>)"), "{h}");
        // Not inside an existing link.
        let h = r("[https://a.example](https://b.example)");
        assert_eq!(h.matches("<a ").count(), 1, "{h}");
    }

    #[test]
    fn mentions() {
        let h = r("hi @alice and @bob.smith. and @channel, mail me@x.org");
        assert!(
            h.contains("<span class=\"mention mention-me\" data-mention=\"alice\">@alice</span>"),
            "{h}"
        );
        assert!(
            h.contains("<span class=\"mention\" data-mention=\"bob.smith\">@bob.smith</span>."),
            "{h}"
        );
        assert!(h.contains("mention-group"), "{h}");
        assert!(!h.contains("data-mention=\"x.org\""), "{h}");
        // Usernames with underscores survive pulldown-cmark's text splitting.
        assert!(r("@john_doe_").contains("data-mention=\"john_doe_\""));
    }

    #[test]
    fn emoji() {
        let h = r(":+1: :tada: :parrot: :nope: 10:30:00");
        assert!(
            h.contains("<span class=\"emoji\" title=\":+1:\">👍</span>"),
            "{h}"
        );
        assert!(h.contains("🎉"), "{h}");
        assert!(
            h.contains("<img class=\"emoji\" src=\"/media/emoji/abc123\" alt=\":parrot:\""),
            "{h}"
        );
        assert!(h.contains(":nope:"), "{h}");
        assert!(h.contains("10:30:00"), "{h}");
        for name in [
            "+1",
            "-1",
            "thumbsup",
            "heart",
            "tada",
            "smile",
            "joy",
            "eyes",
            "rocket",
            "white_check_mark",
        ] {
            assert!(emoji_glyph(name).is_some(), "{name}");
        }
        assert!(EMOJI.len() >= 250, "{}", EMOJI.len());
    }

    #[test]
    fn images() {
        let id = "abcdefghijklmnopqrstuvwxyz";
        let h = r(&format!(
            "![shot](https://mm.example.com/api/v4/files/{id}/preview)"
        ));
        assert!(
            h.contains(&format!(
                "<img class=\"md-image\" src=\"/media/files/{id}\" alt=\"shot\""
            )),
            "{h}"
        );
        let h = r("![cat *pic*](https://evil.example/cat.png)");
        assert!(!h.contains("<img"), "{h}");
        assert!(
            h.contains("<a href=\"https://evil.example/cat.png\""),
            "{h}"
        );
        assert!(h.contains("cat <em>pic</em>"), "{h}");
        assert!(!r("![x](/media/avatar/u)").contains("<img"));
        assert!(!r("![x](https://mm.example.com/api/v4/files/short)").contains("<img"));
    }

    #[test]
    fn raw_html_is_text() {
        let h = r("<div onclick=\"x\">hi</div>\n\ntext <b>bold</b>");
        assert!(
            h.contains("&lt;div onclick=&quot;x&quot;&gt;hi&lt;/div&gt;"),
            "{h}"
        );
        assert!(h.contains("text &lt;b&gt;bold&lt;/b&gt;"), "{h}");
    }

    #[test]
    fn href_allow_list() {
        let c = ctx();
        for bad in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "jav\tascript:alert(1)",
            " javascript:alert(1)",
            "vbscript:msgbox",
            "data:text/html,<script>",
            "file:///etc/passwd",
            "java\u{0}script:x",
            "\\\\evil/x",
            "http:x",
        ] {
            assert_eq!(safe_href(bad, &c), None, "{bad:?}");
        }
        assert_eq!(
            safe_href("https://a.b/c?d#e", &c).as_deref(),
            Some("https://a.b/c?d#e")
        );
        assert_eq!(safe_href("#x", &c).as_deref(), Some("#x"));
        assert_eq!(
            safe_href("foo/bar:baz", &c).as_deref(),
            Some("https://mm.example.com/foo/bar:baz")
        );
    }

    /// Checks that `html` only contains tags and attributes the renderer is allowed to emit, with
    /// safe URLs. Returns a description of the first problem.
    pub(crate) fn check_safe(html: &str) -> Result<(), String> {
        let bytes = html.as_bytes();
        let mut i = 0;
        while let Some(off) = html[i..].find('<') {
            let start = i + off;
            let mut j = start + 1;
            let closing = bytes.get(j) == Some(&b'/');
            if closing {
                j += 1;
            }
            let name_len = html[j..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            let name = &html[j..j + name_len];
            if !ALLOWED_TAGS.contains(&name) {
                return Err(format!("tag {name:?} at {start}"));
            }
            j += name_len;
            loop {
                match bytes.get(j) {
                    Some(b'>') => {
                        j += 1;
                        break;
                    }
                    Some(b' ') if !closing => {
                        j += 1;
                        let attr_len = html[j..]
                            .bytes()
                            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-')
                            .count();
                        let attr = &html[j..j + attr_len];
                        if !ALLOWED_ATTRS.contains(&attr) {
                            return Err(format!("attribute {attr:?} on {name}"));
                        }
                        j += attr_len;
                        if !html[j..].starts_with("=\"") {
                            return Err(format!("unquoted attribute {attr:?} on {name}"));
                        }
                        j += 2;
                        let Some(value_len) = html[j..].find('"') else {
                            return Err("unterminated attribute".into());
                        };
                        let value = &html[j..j + value_len];
                        if value.contains(['<', '>']) {
                            return Err(format!("raw angle bracket in {attr}"));
                        }
                        let decoded = value
                            .replace("&quot;", "\"")
                            .replace("&#39;", "'")
                            .replace("&lt;", "<")
                            .replace("&gt;", ">")
                            .replace("&amp;", "&");
                        let lower = decoded.to_ascii_lowercase();
                        let ok = match attr {
                            "href" => {
                                ["http://", "https://", "mailto:", "#", "/media/"]
                                    .iter()
                                    .any(|p| lower.starts_with(p))
                                    && !lower.chars().any(|c| c.is_control() || c.is_whitespace())
                            }
                            "src" => lower.starts_with("/media/") && !lower.contains(".."),
                            "class" | "target" | "rel" | "loading" | "start" => {
                                decoded.bytes().all(|b| {
                                    b.is_ascii_alphanumeric()
                                        || matches!(b, b' ' | b'-' | b'_' | b'+')
                                })
                            }
                            _ => true,
                        };
                        if !ok {
                            return Err(format!("unsafe {attr}={value:?} on {name}"));
                        }
                        j += value_len + 1;
                    }
                    _ => return Err(format!("malformed tag {name:?} at {start}")),
                }
            }
            i = j;
        }
        if html.contains('>')
            && html.replace("&gt;", "").matches('>').count() != html.matches('<').count()
        {
            return Err("stray '>'".into());
        }
        Ok(())
    }

    fn corpus() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xss_corpus");
        let mut payloads = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("corpus dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("corpus file");
            for (n, payload) in text.split("\n=====\n").enumerate() {
                let label = format!("{}#{n}", file.display());
                payloads.push((label, payload.to_owned()));
            }
        }
        payloads
    }

    #[test]
    fn xss_corpus_is_inert() {
        let payloads = corpus();
        assert!(
            payloads.len() > 100,
            "corpus has {} payloads",
            payloads.len()
        );
        for (label, payload) in payloads {
            let html = r(&payload);
            if let Err(problem) = check_safe(&html) {
                panic!("{label}: {problem}\ninput: {payload}\noutput: {html}");
            }
            // Raw HTML shows as text, so only real tags matter (attributes: check_safe).
            let lower = html.to_ascii_lowercase();
            for needle in ["<script", "<svg", "<iframe", "<style", "<math", "<object"] {
                assert!(!lower.contains(needle), "{label}: {needle}\n{html}");
            }
        }
    }

    #[test]
    fn checker_catches_bad_html() {
        assert!(check_safe("<p>ok <a href=\"https://x\">x</a></p>").is_ok());
        assert!(check_safe("<script>").is_err());
        assert!(check_safe("<img src=\"x\" onerror=\"y\">").is_err());
        assert!(check_safe("<a href=\"javascript:x\">").is_err());
        assert!(check_safe("<a href=x>").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics_and_stays_safe(s in "[<>a-zA-Z0-9:/\\[\\]()!*_`#@&;\"' \n\t=.~|+-]{0,160}") {
            let html = r(&s);
            proptest::prop_assert!(check_safe(&html).is_ok(), "{:?} -> {}", s, html);
        }

        #[test]
        fn token_soup_stays_safe(parts in proptest::collection::vec(proptest::sample::select(vec![
            "<", ">", "<script>", "</p>", "<img src=x onerror=a>", "[", "]", "(", ")", "![", "](",
            "javascript:", "jav&#x09;ascript:", "https://e.x/", "www.a.b", "@alice", "@here", ":+1:",
            ":parrot:", "**", "_", "~~", "`", "```", "\n", "\n\n", "> ", "- ", "1. ", "| a |",
            "|---|", "&amp;", "&#60;", "\"", "'", " ", "x", "é", "🎉", "<svg onload=a>", "<!--",
            "/api/v4/files/abcdefghijklmnopqrstuvwxyz", "https://mm.example.com", "\\", "# ",
        ]), 0..40)) {
            let s: String = parts.concat();
            let html = r(&s);
            proptest::prop_assert!(check_safe(&html).is_ok(), "{:?} -> {}", s, html);
        }
    }
}
