//! The storage conformance suite on the embedded (redb) engine.

letterlock_storage::storage_conformance_tests!(
    |dir: &std::path::Path| -> Box<dyn letterlock_storage::Engine> {
        Box::new(letterlock_storage::embedded::EmbeddedEngine::open(dir).expect("open"))
    }
);
