//! The trainable spam classifier: Robinson's per-feature probabilities combined with Fisher's
//! chi-square method (Gary Robinson, "A Statistical Approach to the Spam Problem", 2003; the
//! combining SpamBayes uses), over features from [`crate::tokens`].
//!
//! Features are never stored as text: each is a keyed hash (HMAC-SHA256 under the model's own
//! key, truncated to 64 bits), so a stolen model reveals no words. A global model and a per-user
//! model are combined feature by feature: the user's own counts decide a feature the user has
//! trained on, the global model decides the rest.

use std::collections::{BTreeSet, HashMap};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::tokens;

/// Robinson's strength of the prior and the prior itself: with few sightings a feature's
/// probability stays near 0.5.
const PRIOR_STRENGTH: f64 = 0.45;
const PRIOR_PROBABILITY: f64 = 0.5;
/// Features whose probability is closer than this to 0.5 say nothing and are left out.
const MINIMUM_DISTANCE: f64 = 0.1;
/// The strongest features used per message (SpamBayes uses 150).
pub const FEATURES_SCORED_MAX: usize = 150;
/// Sightings of a feature in a user's own training after which the user's model, not the
/// global one, decides that feature's probability.
pub const USER_SIGHTINGS_MIN: u32 = 3;
/// Distinct features a model keeps; past this, training stops adding new features (and says
/// so) rather than grow without bound.
pub const MODEL_FEATURES_MAX: usize = 2_000_000;
/// Reasons listed in the explanation header.
pub const REASONS_MAX: usize = 5;

/// HMAC-SHA256 under a model's key, truncated to 64 bits: collisions among a few million
/// features are negligible (birthday bound about 2^32).
struct FeatureHasher(Option<Hmac<Sha256>>);

impl FeatureHasher {
    fn hash(&self, feature: &str) -> u64 {
        // HMAC accepts keys of any length, so the keyed instance always exists.
        let Some(base) = &self.0 else {
            return 0;
        };
        let mut mac = base.clone();
        mac.update(feature.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Spam,
    Ham,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Counts {
    spam: u32,
    ham: u32,
}

/// A model: feature counts under hashed keys. Serialize it to store it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Model {
    key: [u8; 32],
    spam_messages: u32,
    ham_messages: u32,
    counts: HashMap<u64, Counts>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model({} spam, {} ham, {} features)",
            self.spam_messages,
            self.ham_messages,
            self.counts.len()
        )
    }
}

/// How one feature weighed in.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub feature: String,
    pub probability: f64,
}

/// The classifier's verdict on one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0 (ham) to 1 (spam).
    pub spam_probability: f64,
    /// The features that pushed hardest, either way.
    pub reasons: Vec<Reason>,
}

impl Model {
    /// An empty model with its own feature key (random per model, kept with it).
    pub fn new(key: [u8; 32]) -> Model {
        Model {
            key,
            spam_messages: 0,
            ham_messages: 0,
            counts: HashMap::new(),
        }
    }

    pub fn trained_messages(&self) -> (u32, u32) {
        (self.spam_messages, self.ham_messages)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// The keyed hash of features, ready to be cloned per feature (keying HMAC once per
    /// message rather than once per feature).
    fn hasher(&self) -> FeatureHasher {
        FeatureHasher(<Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok())
    }

    /// Learn one message as `class`. Returns false if the model is full and new features were
    /// skipped.
    pub fn train(&mut self, message: &[u8], class: Class) -> bool {
        self.train_features(&tokens::features(message), class, 1)
    }

    /// Undo a training (a message moved out of Junk after it was trained as spam).
    pub fn untrain(&mut self, message: &[u8], class: Class) {
        let hasher = self.hasher();
        for feature in tokens::features(message) {
            let hash = hasher.hash(&feature);
            if let Some(counts) = self.counts.get_mut(&hash) {
                match class {
                    Class::Spam => counts.spam = counts.spam.saturating_sub(1),
                    Class::Ham => counts.ham = counts.ham.saturating_sub(1),
                }
                if counts.spam == 0 && counts.ham == 0 {
                    self.counts.remove(&hash);
                }
            }
        }
        match class {
            Class::Spam => self.spam_messages = self.spam_messages.saturating_sub(1),
            Class::Ham => self.ham_messages = self.ham_messages.saturating_sub(1),
        }
    }

    fn train_features(&mut self, features: &BTreeSet<String>, class: Class, weight: u32) -> bool {
        let mut complete = true;
        let hasher = self.hasher();
        for feature in features {
            let hash = hasher.hash(feature);
            if !self.counts.contains_key(&hash) && self.counts.len() >= MODEL_FEATURES_MAX {
                complete = false;
                continue;
            }
            let counts = self.counts.entry(hash).or_default();
            match class {
                Class::Spam => counts.spam = counts.spam.saturating_add(weight),
                Class::Ham => counts.ham = counts.ham.saturating_add(weight),
            }
        }
        match class {
            Class::Spam => self.spam_messages = self.spam_messages.saturating_add(weight),
            Class::Ham => self.ham_messages = self.ham_messages.saturating_add(weight),
        }
        complete
    }

    fn counts_of(&self, hasher: &FeatureHasher, feature: &str) -> Counts {
        self.counts
            .get(&hasher.hash(feature))
            .copied()
            .unwrap_or_default()
    }
}

/// Score a message against the global model and, if given, the user's own.
pub fn score(message: &[u8], global: &Model, user: Option<&Model>) -> Score {
    score_features(&tokens::features(message), global, user)
}

/// Robinson's probability that a message with this feature is spam, from counts.
fn feature_probability(counts: Counts, spam_messages: u32, ham_messages: u32) -> Option<f64> {
    let seen = f64::from(counts.spam) + f64::from(counts.ham);
    if seen == 0.0 {
        return None;
    }
    let spam_ratio = (f64::from(counts.spam) / f64::from(spam_messages.max(1))).min(1.0);
    let ham_ratio = (f64::from(counts.ham) / f64::from(ham_messages.max(1))).min(1.0);
    let raw = spam_ratio / (spam_ratio + ham_ratio);
    Some((PRIOR_STRENGTH * PRIOR_PROBABILITY + seen * raw) / (PRIOR_STRENGTH + seen))
}

fn score_features(features: &BTreeSet<String>, global: &Model, user: Option<&Model>) -> Score {
    let user_trained = user.is_some_and(|model| model.spam_messages + model.ham_messages > 0);
    let global_trained = global.spam_messages > 0 && global.ham_messages > 0;
    if !global_trained && !user_trained {
        return Score {
            spam_probability: 0.5,
            reasons: Vec::new(),
        };
    }
    let global_hasher = global.hasher();
    let user_hasher = user.map(Model::hasher);
    let mut clues: Vec<(f64, &String)> = features
        .iter()
        .filter_map(|feature| {
            // The user's own opinion of a feature wins once the user has seen it a few times;
            // otherwise the global model speaks.
            if let (Some(model), Some(hasher)) = (user, &user_hasher) {
                let counts = model.counts_of(hasher, feature);
                if counts.spam.saturating_add(counts.ham) >= USER_SIGHTINGS_MIN {
                    return feature_probability(counts, model.spam_messages, model.ham_messages)
                        .map(|probability| (probability, feature));
                }
            }
            if !global_trained {
                return None;
            }
            let counts = global.counts_of(&global_hasher, feature);
            feature_probability(counts, global.spam_messages, global.ham_messages)
                .map(|probability| (probability, feature))
        })
        .filter(|(probability, _)| (probability - 0.5).abs() >= MINIMUM_DISTANCE)
        .collect();
    clues.sort_by(|a, b| {
        (b.0 - 0.5)
            .abs()
            .partial_cmp(&(a.0 - 0.5).abs())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.1.cmp(b.1))
    });
    clues.truncate(FEATURES_SCORED_MAX);
    if clues.is_empty() {
        return Score {
            spam_probability: 0.5,
            reasons: Vec::new(),
        };
    }
    let count = clues.len() as f64;
    let ham_evidence: f64 = clues.iter().map(|(p, _)| p.max(1e-9).ln()).sum();
    let spam_evidence: f64 = clues.iter().map(|(p, _)| (1.0 - p).max(1e-9).ln()).sum();
    let hamminess = chi2_survival(-2.0 * ham_evidence, 2.0 * count);
    let spamminess = chi2_survival(-2.0 * spam_evidence, 2.0 * count);
    let spam_probability = ((1.0 + hamminess - spamminess) / 2.0).clamp(0.0, 1.0);
    let reasons = clues
        .iter()
        .take(REASONS_MAX)
        .map(|(probability, feature)| Reason {
            feature: (*feature).clone(),
            probability: *probability,
        })
        .collect();
    Score {
        spam_probability,
        reasons,
    }
}

/// P(X >= chi2) for a chi-square distribution with `degrees` (even) degrees of freedom.
fn chi2_survival(chi2: f64, degrees: f64) -> f64 {
    let half = chi2 / 2.0;
    let mut term = (-half).exp();
    let mut sum = term;
    let steps = (degrees / 2.0) as usize;
    for index in 1..steps {
        term *= half / index as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spam(n: usize) -> Vec<u8> {
        format!("From: winner{n}@lottery.example\r\nSubject: You have WON a prize {n}\r\n\r\nClaim your free money prize now, click https://claim.example/{n} viagra casino\r\n").into_bytes()
    }

    fn ham(n: usize) -> Vec<u8> {
        format!("From: colleague{n}@work.example\r\nSubject: Meeting notes {n}\r\n\r\nHere are the notes from the project meeting about the quarterly budget review.\r\n").into_bytes()
    }

    fn trained() -> Model {
        let mut model = Model::new([7u8; 32]);
        for n in 0..20 {
            model.train(&spam(n), Class::Spam);
            model.train(&ham(n), Class::Ham);
        }
        model
    }

    #[test]
    fn an_untrained_model_is_unsure() {
        assert_eq!(
            score(&spam(1), &Model::new([1u8; 32]), None).spam_probability,
            0.5
        );
    }

    #[test]
    fn separates_what_it_was_taught_and_explains_itself() {
        let model = trained();
        let spammy = score(&spam(99), &model, None);
        let hammy = score(&ham(99), &model, None);
        assert!(spammy.spam_probability > 0.9, "{spammy:?}");
        assert!(hammy.spam_probability < 0.1, "{hammy:?}");
        assert!(!spammy.reasons.is_empty());
        assert!(spammy.reasons.iter().all(|reason| reason.probability > 0.5));
    }

    #[test]
    fn a_user_model_overrides_the_global_one() {
        let global = trained();
        // This user wants the lottery newsletters.
        let mut user = Model::new([9u8; 32]);
        for n in 0..20 {
            user.train(&spam(n), Class::Ham);
        }
        let verdict = score(&spam(99), &global, Some(&user));
        assert!(verdict.spam_probability < 0.5, "{verdict:?}");
    }

    #[test]
    fn untraining_restores_the_model() {
        let mut model = trained();
        let before = model.to_bytes().len();
        let extra = b"Subject: unique words zyxwv qwert\r\n\r\nsomething entirely unlike\r\n";
        model.train(extra, Class::Spam);
        model.untrain(extra, Class::Spam);
        assert_eq!(model.trained_messages(), (20, 20));
        assert_eq!(model.to_bytes().len(), before);
    }

    #[test]
    fn the_stored_model_holds_no_words() {
        let model = trained();
        let bytes = model.to_bytes();
        for word in ["lottery", "viagra", "meeting", "budget"] {
            assert!(!bytes
                .windows(word.len())
                .any(|window| window == word.as_bytes()));
        }
        let again = Model::from_bytes(&bytes).expect("round trip");
        assert_eq!(
            score(&spam(5), &again, None).spam_probability,
            score(&spam(5), &model, None).spam_probability
        );
    }

    #[test]
    fn chi2_survival_matches_known_values() {
        // For 2 degrees of freedom, P(X >= x) = e^(-x/2).
        assert!((chi2_survival(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-12);
        assert!((chi2_survival(0.0, 10.0) - 1.0).abs() < 1e-12);
        assert!(chi2_survival(1000.0, 4.0) < 1e-100);
    }
}
