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

/// First values of sentence-transformers' vectors (6.2, all-MiniLM-L6-v2 as packaged,
/// `SentenceTransformer.encode(..., batch_size=32)`, torch 2.15 CPU), rounded to 7 places.
const REFERENCE: &[(&str, [f32; 4])] = &[
    (
        "The quick brown fox jumps over the lazy dog.",
        [0.0439336, 0.0589344, 0.0481783, 0.0775481],
    ),
    (
        "Plexus sells AI compute on a decentralized network.",
        [-0.0679832, -0.076063, 0.0027042, -0.0464858],
    ),
    (
        "How many 4-digit numbers are divisible by 7?",
        [0.025765, 0.0458778, -0.054305, -0.0096596],
    ),
];

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
    let mut m = chat(Precision::Exact);
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
    let mut m = chat(Precision::Exact);
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
fn smollm2_quantized_answers_simple_questions() {
    // Q4_1 matmuls answer most questions like the f32 model; on "capital of France" a
    // near-tie in the first token flips, which is why exact is the default.
    let mut m = chat(Precision::Quantized);
    let p = GenerateParams {
        max_tokens: 32,
        ..Default::default()
    };
    let c = m
        .chat("What is the capital of Germany?", &p, |_| {})
        .unwrap();
    assert!(c.text.contains("Berlin"), "{}", c.text);
    let c = m.chat("What is 2+2?", &p, |_| {}).unwrap();
    assert!(c.text.contains('4'), "{}", c.text);
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

/// Greedy token ids transformers 5.23 produces for this prompt from the same GGUF
/// (dequantized to f32, torch 2.15 CPU): "The capital of France is Paris.<|im_end|>".
const TRANSFORMERS_GREEDY: &[u32] = &[504, 3575, 282, 4649, 314, 7042, 30, 2];

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
    assert_eq!(c.tokens, TRANSFORMERS_GREEDY, "{}", c.text);
}

#[test]
#[ignore = "needs `plexus models install`"]
fn smollm2_tokenizer_matches_transformers() {
    let m = chat(Precision::Quantized);
    // Ids from transformers' tokenizer for the same GGUF: no prefix space, digits split.
    for (text, ids) in TOKENIZER_CASES {
        assert_eq!(&m.encode(text).unwrap(), ids, "{text}");
    }
}

const TOKENIZER_CASES: &[(&str, &[u32])] = &[
    ("Hello world", &[19556, 905]),
    (
        "The year 2024 had 366 days.",
        &[
            504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30,
        ],
    ),
    (" leading space", &[2899, 1898]),
    (
        "na\u{ef}ve caf\u{e9} \u{fc}n\u{ef}code",
        &[3546, 46494, 37366, 5549, 137, 94, 25972, 4635],
    ),
    (
        "x=12345;y=6",
        &[104, 45, 33, 34, 35, 36, 37, 43, 105, 45, 38],
    ),
    (
        "line1\nline2\n\n  indented",
        &[1311, 33, 198, 1311, 34, 8866, 641, 6574],
    ),
    (
        "<|im_start|>user\nHi<|im_end|>\n",
        &[1, 4093, 198, 26843, 2, 198],
    ),
    (
        "It's   multiple   spaces!!",
        &[1589, 506, 256, 2701, 256, 5600, 10095],
    ),
];
