//! THREAD=REFERENCES (RFC 5256 section 4): messages linked into threads by their Message-ID
//! and References (In-Reply-To when a message has no References), siblings ordered by sent
//! date.
//!
//! A message hangs under its nearest ancestor in the mailbox: the last of its references
//! present, so a reply whose direct parent was deleted still joins its thread. Missing
//! ancestors do not create placeholder nodes (RFC 5256's dummy messages); a message with no
//! ancestor present is a thread root.

use std::collections::HashMap;

/// One message as THREAD sees it.
pub struct Threadable {
    /// What the response shows: sequence number or UID.
    pub number: u32,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// The References field's message IDs, oldest first.
    pub references: Vec<String>,
    pub sent: i64,
}

/// Normalised message id: the first `<...>` token, or the trimmed text.
fn id_of(text: &str) -> String {
    let text = text.trim();
    match (text.find('<'), text.find('>')) {
        (Some(start), Some(end)) if start < end => text[start..=end].to_ascii_lowercase(),
        _ => text.to_ascii_lowercase(),
    }
}

/// The threads of `messages`, as an RFC 5256 THREAD response body (`(1 2)(3 (4)(5))`).
pub fn thread(messages: &[Threadable]) -> String {
    let mut index_by_id: HashMap<String, usize> = HashMap::new();
    for (index, message) in messages.iter().enumerate() {
        if let Some(id) = &message.message_id {
            // A duplicate Message-ID keeps the first message; the others stand alone.
            index_by_id.entry(id_of(id)).or_insert(index);
        }
    }
    let mut parent: Vec<Option<usize>> = vec![None; messages.len()];
    for (index, message) in messages.iter().enumerate() {
        // RFC 5256: References, nearest first; In-Reply-To only without References.
        let ancestors: Vec<&str> = if message.references.is_empty() {
            message.in_reply_to.as_deref().into_iter().collect()
        } else {
            message
                .references
                .iter()
                .rev()
                .map(String::as_str)
                .collect()
        };
        let Some(candidate) = ancestors
            .into_iter()
            .find_map(|ancestor| index_by_id.get(&id_of(ancestor)).copied())
            .filter(|&candidate| candidate != index)
        else {
            continue;
        };
        // Never link into a loop: walk up from the candidate and refuse if we meet ourselves.
        let mut cursor = Some(candidate);
        let mut creates_loop = false;
        while let Some(at) = cursor {
            if at == index {
                creates_loop = true;
                break;
            }
            cursor = parent[at];
        }
        if !creates_loop {
            parent[index] = Some(candidate);
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); messages.len()];
    let mut roots = Vec::new();
    for (index, parent) in parent.iter().enumerate() {
        match parent {
            Some(parent) => children[*parent].push(index),
            None => roots.push(index),
        }
    }
    let by_date = |a: &usize, b: &usize| {
        messages[*a]
            .sent
            .cmp(&messages[*b].sent)
            .then(messages[*a].number.cmp(&messages[*b].number))
    };
    for list in &mut children {
        list.sort_by(by_date);
    }
    roots.sort_by(by_date);
    let mut out = String::new();
    for root in roots {
        out.push('(');
        write_node(root, messages, &children, &mut out);
        out.push(')');
    }
    out
}

fn write_node(node: usize, messages: &[Threadable], children: &[Vec<usize>], out: &mut String) {
    // A chain of only children is written flat: (1 2 3).
    let mut node = node;
    loop {
        out.push_str(&messages[node].number.to_string());
        match children[node].as_slice() {
            [] => return,
            [only] => {
                out.push(' ');
                node = *only;
            }
            several => {
                out.push(' ');
                for child in several {
                    out.push('(');
                    write_node(*child, messages, children, out);
                    out.push(')');
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(number: u32, id: &str, reply_to: Option<&str>, sent: i64) -> Threadable {
        Threadable {
            number,
            message_id: Some(format!("<{id}@example.org>")),
            in_reply_to: reply_to.map(|parent| format!("<{parent}@example.org>")),
            references: Vec::new(),
            sent,
        }
    }

    #[test]
    fn references_hang_a_reply_under_its_nearest_ancestor_present() {
        let with_references = |number: u32, id: &str, references: &[&str], sent: i64| {
            let mut message = message(number, id, references.last().copied(), sent);
            message.references = references
                .iter()
                .map(|reference| format!("<{reference}@example.org>"))
                .collect();
            message
        };
        let messages = [
            message(1, "a", None, 10),
            // b was deleted: c replies to it, and its References reach a.
            with_references(3, "c", &["a", "b"], 30),
            with_references(4, "d", &["a", "b", "c"], 40),
            // In-Reply-To names a message here, but References (which win) name only
            // missing ones: a root.
            {
                let mut message = message(5, "e", Some("a"), 50);
                message.references = vec!["<gone@example.org>".into()];
                message
            },
        ];
        assert_eq!(thread(&messages), "(1 3 4)(5)");
    }

    #[test]
    fn chains_branches_and_roots() {
        let messages = [
            message(1, "a", None, 10),
            message(2, "b", Some("a"), 20),
            message(3, "c", Some("b"), 30),
            message(4, "d", None, 5),
            message(5, "e", Some("d"), 40),
            message(6, "f", Some("d"), 35),
            message(7, "g", Some("missing"), 50),
        ];
        assert_eq!(thread(&messages), "(4 (6)(5))(1 2 3)(7)");
    }

    #[test]
    fn loops_and_duplicates_do_not_hang() {
        let messages = [
            message(1, "a", Some("b"), 1),
            message(2, "b", Some("a"), 2),
            message(3, "a", None, 3),
        ];
        let threads = thread(&messages);
        assert!(
            threads.contains('1') && threads.contains('2') && threads.contains('3'),
            "{threads}"
        );
    }
}
