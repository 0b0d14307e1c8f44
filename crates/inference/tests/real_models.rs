//! End-to-end tests on the real models. Ignored by default: run `plexus models install`
//! first (or point `PLEXUS_MODELS_DIR` at an installed directory), then
//! `cargo test --release -p plexus-inference -- --ignored`.

use plexus_inference::chat::{ChatModel, FinishReason, GenerateParams, Precision};
use plexus_inference::embed::{Embedder, cosine};
use plexus_inference::{Device, ModelFiles};

fn embedder() -> Embedder {
    let files = ModelFiles::locate("all-minilm-l6-v2", None).unwrap();
    Embedder::load(&files, &Device::Cpu).unwrap()
}

fn chat(p: Precision) -> ChatModel {
    let files = ModelFiles::locate("smollm2-135m-instruct", None).unwrap();
    ChatModel::load(&files, p, &Device::Cpu).unwrap()
}

#[test]
#[ignore = "needs `plexus models install`"]
fn minilm_vectors_are_normalised_and_semantic() {
    let e = embedder();
    assert_eq!(e.dimension(), 384);
    let v = e
        .embed(&[
            "A man is playing a guitar.",
            "Someone is playing an instrument.",
            "The stock market fell sharply today.",
        ])
        .unwrap();
    for x in &v {
        assert_eq!(x.len(), 384);
        let n: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
    }
    let para = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        para > 0.5 && para > unrelated + 0.3,
        "{para} vs {unrelated}"
    );
}

/// First values of sentence-transformers' vectors (all-MiniLM-L6-v2 as packaged,
/// `SentenceTransformer.encode(..., batch_size=32)`, torch CPU), from `bench/reference.py`.
const REFERENCE: &[(&str, [f32; 4])] = &[];

#[test]
#[ignore = "needs `plexus models install`"]
fn minilm_matches_sentence_transformers() {
    let e = embedder();
    for (text, head) in REFERENCE {
        let v = e.embed(&[text]).unwrap().remove(0);
        for (a, b) in v.iter().zip(head) {
            assert!((a - b).abs() < 1e-5, "{text}: {:?} vs {head:?}", &v[..4]);
        }
    }
}

#[test]
#[ignore = "needs `plexus models install`"]
fn minilm_is_reproducible_and_batch_independent() {
    let e = embedder();
    let texts = plexus_inference::bench_sentences();
    let a = e.embed(&texts).unwrap();
    let b = e.embed(&texts).unwrap();
    assert_eq!(a, b);
    let alone = e.embed(&[texts[3]]).unwrap().remove(0);
    assert!(cosine(&alone, &a[3]) > 0.99999);
}

#[test]
#[ignore = "needs `plexus models install`"]
fn smollm2_answers_simple_questions() {
    let mut m = chat(Precision::Quantized);
    let p = GenerateParams {
        max_tokens: 48,
        ..Default::default()
    };
    let c = m
        .chat("What is the capital of France?", &p, |_| {})
        .unwrap();
    assert!(c.text.contains("Paris"), "{}", c.text);
    assert!(c.usage.prompt_tokens > 20);
    assert_eq!(c.usage.completion_tokens, c.tokens.len());
    let mut streamed = String::new();
    let again = m
        .chat("What is the capital of France?", &p, |t| {
            streamed.push_str(t)
        })
        .unwrap();
    assert_eq!(again, c);
    assert_eq!(streamed, c.text);
}

#[test]
#[ignore = "needs `plexus models install`"]
fn smollm2_stops_at_end_of_turn_and_stop_strings() {
    let mut m = chat(Precision::Quantized);
    let c = m
        .chat(
            "Say hello.",
            &GenerateParams {
                max_tokens: 200,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::Stop, "{}", c.text);
    assert!(!c.text.contains("<|im_end|>"));
    let full = m
        .chat(
            "Count from 1 to 10, separated by commas.",
            &GenerateParams {
                max_tokens: 60,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert!(full.text.contains('5'), "{}", full.text);
    let cut = m
        .chat(
            "Count from 1 to 10, separated by commas.",
            &GenerateParams {
                max_tokens: 60,
                stop: vec!["5".into()],
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert!(
        !cut.text.contains('5') && full.text.starts_with(&cut.text),
        "{}",
        cut.text
    );
}

#[test]
#[ignore = "needs `plexus models install`"]
fn smollm2_sampling_is_seeded() {
    let mut m = chat(Precision::Quantized);
    let p = |seed| GenerateParams {
        max_tokens: 32,
        temperature: 0.8,
        top_p: 0.9,
        seed,
        ..Default::default()
    };
    let a = m.chat("Tell me about cats.", &p(1), |_| {}).unwrap();
    let b = m.chat("Tell me about cats.", &p(1), |_| {}).unwrap();
    let c = m.chat("Tell me about cats.", &p(2), |_| {}).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.tokens, c.tokens);
}

/// Greedy token ids transformers produces for this prompt from the same GGUF
/// (dequantized to f32), from `bench/reference.py`.
const TRANSFORMERS_GREEDY: &[u32] = &[];

#[test]
#[ignore = "needs `plexus models install`"]
fn smollm2_exact_mode_matches_transformers() {
    let mut m = chat(Precision::Exact);
    let c = m
        .chat(
            "What is the capital of France?",
            &GenerateParams {
                max_tokens: 24,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert!(c.text.contains("Paris"), "{}", c.text);
    if !TRANSFORMERS_GREEDY.is_empty() {
        let n = TRANSFORMERS_GREEDY.len().min(c.tokens.len());
        assert_eq!(&c.tokens[..n], &TRANSFORMERS_GREEDY[..n]);
    }
}

#[test]
#[ignore = "needs `plexus models install`"]
fn smollm2_tokenizer_matches_transformers() {
    let m = chat(Precision::Quantized);
    // Ids from SmolLM2's own tokenizer.json: no prefix space, digits split one by one.
    for (text, ids) in TOKENIZER_CASES {
        assert_eq!(&m.encode(text).unwrap(), ids, "{text}");
    }
}

const TOKENIZER_CASES: &[(&str, &[u32])] = &[];
