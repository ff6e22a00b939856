//! Bad gradients over real gRPC exchange streams: each refused with the right status,
//! the parameters unchanged.
//! And large models, streamed in many pieces, through every call that carries parameters.

use bytes::Bytes;
use tonic::Code;

use downpour_core::{ParamSet, Push};
use downpour_proto::convert::{f32_to_le_bytes, params_to_wire};
use downpour_proto::limits::PIECE_BYTES;
use downpour_proto::v1;
use downpour_worker::ServerClient;

use crate::support::{ServerProcess, bits};

const JOB: &str = r#"
[model]
kind = "softmax_regression"

[data]
kind = "synthetic_classification"
samples = 200
features = 4
classes = 3

[training]
workers = 2
epochs = 2
"#;

/// The header of a gradient of step 0 by `worker`, asking for no parameters back.
fn header(worker: u32) -> v1::PushHeader {
    v1::PushHeader {
        worker_id: worker,
        step: 0,
        base_version: 0,
        loss: 0.1,
        samples: 1,
        phases: None,
        next_step: None,
        session: String::new(),
    }
}

/// The first message of a gradient of step 0 by `worker`, with `gradients`; `last`
/// when the gradient is this one message.
fn first_message(worker: u32, gradients: Vec<v1::Tensor>, last: bool) -> v1::ExchangeRequest {
    v1::ExchangeRequest {
        header: Some(header(worker)),
        gradients,
        last,
    }
}

/// A later message of a gradient: only pieces (a header here, set to nonsense, is ignored).
fn later_message(gradients: Vec<v1::Tensor>, last: bool) -> v1::ExchangeRequest {
    v1::ExchangeRequest {
        header: Some(v1::PushHeader {
            worker_id: 999,
            step: 77,
            base_version: 55,
            loss: f64::NAN,
            ..v1::PushHeader::default()
        }),
        gradients,
        last,
    }
}

/// What the server answers on a fresh exchange stream that carries `messages`: its first
/// reply message, `None` when it closed the stream without one, or its refusal.
async fn exchange_messages(
    client: &ServerClient,
    mut messages: Vec<v1::ExchangeRequest>,
) -> Result<Option<v1::ExchangeReply>, tonic::Status> {
    // The first header acts as its worker: it carries that worker's session secret.
    if let Some(header) = messages.first_mut().and_then(|m| m.header.as_mut()) {
        header.session = client.session_of(header.worker_id);
    }
    let mut replies = client
        .raw()
        .exchange(tokio_stream::iter(messages))
        .await?
        .into_inner();
    replies.message().await
}

/// A gradient streamed as `messages`, which must be refused.
async fn push_messages(client: &ServerClient, messages: Vec<v1::ExchangeRequest>) -> tonic::Status {
    exchange_messages(client, messages)
        .await
        .expect_err("the gradient must be refused")
}

/// A gradient in one message, which must be refused.
async fn push(client: &ServerClient, worker: u32, gradients: Vec<v1::Tensor>) -> tonic::Status {
    push_messages(client, vec![first_message(worker, gradients, true)]).await
}

/// The facts of step 0's gradient by `worker`.
fn step0(worker: u32, loss: f64, samples: u64) -> Push {
    Push {
        worker,
        step: 0,
        base_version: 0,
        loss,
        samples,
    }
}

/// Values `range` of `name` (of shape `shape`) as a piece.
fn piece(name: &str, shape: &[u64], range: std::ops::Range<usize>, values: &[f32]) -> v1::Tensor {
    v1::Tensor {
        name: name.into(),
        shape: shape.to_vec(),
        offset: range.start as u64,
        data: f32_to_le_bytes(&values[range]),
    }
}

fn zeros(params: &ParamSet) -> Vec<v1::Tensor> {
    params_to_wire(&params.zeros_like())
}

#[tokio::test]
async fn every_bad_push_is_refused_with_the_right_status_and_changes_nothing() {
    let server = ServerProcess::start(JOB, &[]);
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    let a = client.register("a", None).await.unwrap().assignment;
    let b = client.register("b", None).await.unwrap().assignment;
    let (v0, before) = client.parameters().await.unwrap();
    assert_eq!(v0, 0);

    let mut unknown = zeros(&before);
    unknown[0].name = "linear.wieght".into();
    let s = push(&client, a.worker_id, unknown).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("unknown tensor linear.wieght"),
        "{}",
        s.message()
    );

    let mut shape = zeros(&before);
    shape[0].shape = vec![4, 3];
    let s = push(&client, a.worker_id, shape).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("expected shape [3, 4], got [4, 3]"),
        "{}",
        s.message()
    );

    let mut ragged = zeros(&before);
    ragged[1].data = Bytes::from(vec![0u8; 11]);
    let s = push(&client, a.worker_id, ragged).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message()
            .contains("11 bytes is not a whole number of f32 values"),
        "{}",
        s.message()
    );

    for bad in [f32::NAN, f32::INFINITY] {
        let mut g = before.zeros_like();
        g.get_mut("linear.bias").unwrap().data_mut()[2] = bad;
        let s = push(&client, a.worker_id, params_to_wire(&g)).await;
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().contains("at index 2 is not finite"),
            "{}",
            s.message()
        );
    }

    let s = push(&client, 42, zeros(&before)).await;
    assert_eq!(s.code(), Code::NotFound);
    assert_eq!(s.message(), "unknown worker id 42");

    client.leave(b.worker_id).await.unwrap();
    let s = push(&client, b.worker_id, zeros(&before)).await;
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_eq!(
        s.message(),
        format!("worker {} has left the job", b.worker_id)
    );

    let (v1_, after) = client.parameters().await.unwrap();
    assert_eq!(v1_, 0, "no update was applied");
    assert_eq!(bits(&after), bits(&before));
    let status = client.status().await.unwrap();
    assert_eq!(status.workers[a.worker_id as usize].rejected_pushes, 5);
    assert_eq!(status.workers[a.worker_id as usize].pushes, 0);

    // The server still serves: a good push from the remaining worker is applied.
    let mut good = before.zeros_like();
    good.get_mut("linear.bias").unwrap().data_mut()[0] = 1.0;
    let mut exchange = client.open_exchange().await.unwrap();
    let (receipt, params, _) = exchange
        .exchange(&step0(a.worker_id, 0.5, 1), &good, None, None)
        .await
        .unwrap();
    assert_eq!((receipt.version, params.is_none()), (1, true));
    assert_eq!(client.parameters().await.unwrap().0, 1);
}

#[tokio::test]
async fn a_push_split_over_several_messages_must_fit_together() {
    let server = ServerProcess::start(JOB, &[]);
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    let a = client.register("a", None).await.unwrap().assignment;
    let (_, before) = client.parameters().await.unwrap();
    assert_eq!(before.get("linear.weight").unwrap().shape(), &[3, 4]);
    let w = vec![0.25_f32; 12];
    let b = vec![0.5_f32; 3];
    let (ws, bs) = ([3, 4], [3]);

    let gap = vec![
        first_message(
            a.worker_id,
            vec![piece("linear.weight", &ws, 0..6, &w)],
            false,
        ),
        later_message(vec![piece("linear.weight", &ws, 8..12, &w)], false),
        later_message(vec![piece("linear.bias", &bs, 0..3, &b)], true),
    ];
    let s = push_messages(&client, gap).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(
        s.message(),
        "tensor linear.weight: piece starts at value 8, expected 6"
    );

    let incomplete = vec![
        first_message(
            a.worker_id,
            vec![piece("linear.weight", &ws, 0..12, &w)],
            false,
        ),
        later_message(vec![piece("linear.bias", &bs, 0..2, &b)], true),
    ];
    let s = push_messages(&client, incomplete).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(
        s.message(),
        "tensor linear.bias: shape [3] needs 3 values, its pieces ended after 2"
    );

    // A stream that ends before the gradient's last message.
    let truncated = vec![first_message(
        a.worker_id,
        vec![piece("linear.weight", &ws, 0..12, &w)],
        false,
    )];
    let s = push_messages(&client, truncated).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(
        s.message(),
        "the stream ended before the last message of the set"
    );

    // A first message without the step's facts.
    let headless = vec![v1::ExchangeRequest {
        header: None,
        gradients: vec![piece("linear.weight", &ws, 0..12, &w)],
        last: false,
    }];
    let s = push_messages(&client, headless).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(s.message(), "the first message of a step carries no header");

    // A stream closed before any gradient ends cleanly, with nothing applied.
    assert_eq!(exchange_messages(&client, Vec::new()).await.unwrap(), None);

    // A shape far beyond the model's 15 values is refused at its first piece.
    let oversized = vec![first_message(
        a.worker_id,
        vec![piece("linear.weight", &[1 << 20, 1 << 20], 0..12, &w)],
        true,
    )];
    let s = push_messages(&client, oversized).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(
        s.message(),
        "tensor linear.weight: expected shape [3, 4], got [1048576, 1048576]"
    );

    let (v, after) = client.parameters().await.unwrap();
    assert_eq!(v, 0, "no update was applied");
    assert_eq!(bits(&after), bits(&before));
    let status = client.status().await.unwrap();
    assert_eq!(status.workers[a.worker_id as usize].rejected_pushes, 4);
    assert_eq!(status.workers[a.worker_id as usize].pushes, 0);

    // The same gradient, well cut: the header from the first message only.
    let good = vec![
        first_message(
            a.worker_id,
            vec![piece("linear.weight", &ws, 0..5, &w)],
            false,
        ),
        later_message(
            vec![
                piece("linear.weight", &ws, 5..12, &w),
                piece("linear.bias", &bs, 0..1, &b),
            ],
            false,
        ),
        later_message(vec![], false),
        later_message(vec![piece("linear.bias", &bs, 1..3, &b)], true),
    ];
    let reply = exchange_messages(&client, good).await.unwrap().unwrap();
    assert!(reply.last, "no parameters asked for: the receipt alone");
    let header = reply.header.unwrap();
    assert_eq!(header.version, 1);
    assert_eq!(header.staleness, 0);
    let status = client.status().await.unwrap();
    assert_eq!(status.workers[a.worker_id as usize].pushes, 1);
}

#[tokio::test]
async fn a_model_of_several_pieces_round_trips_bit_exactly() {
    // 1,000 inputs x 3,000 hidden + 3,000 x 10: 3,033,010 values, 12 MB, several pieces.
    // SGD with lr = 1: the pushed gradient is subtracted exactly.
    let job = r#"
[model]
kind = "mlp"
hidden = [3000]
[data]
kind = "synthetic_classification"
samples = 20
features = 1000
classes = 10
[training]
workers = 1
epochs = 3
[optimizer]
name = "sgd"
lr = 1.0
[consistency]
mode = "async"
"#;
    let server = ServerProcess::start(job, &[]);
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    let a = client.register("big", None).await.unwrap().assignment;
    let pulled = client.pull(a.worker_id, 0, false).await.unwrap();
    let values = pulled.params.num_values();
    assert_eq!(values, 3_033_010);
    assert!(
        4 * values > 2 * PIECE_BYTES,
        "{values} values fit in fewer than 3 pieces"
    );
    let (version, read) = client.parameters().await.unwrap();
    assert_eq!(version, 0);
    assert_eq!(
        bits(&read),
        bits(&pulled.params),
        "pull and GetParameters agree"
    );
    assert_eq!(
        read.entries()
            .iter()
            .map(|e| e.tensor.shape())
            .collect::<Vec<_>>(),
        pulled
            .params
            .entries()
            .iter()
            .map(|e| e.tensor.shape())
            .collect::<Vec<_>>(),
    );

    // A gradient whose every value says where it is (a shifted piece would show),
    // with -0.0 and subnormals among them.
    let mut g = pulled.params.zeros_like();
    let mut k = 0u32;
    for t in g.tensors_mut() {
        for v in t.data_mut() {
            k += 1;
            *v = match k % 5 {
                0 => -0.0,
                1 => f32::from_bits(k % 1000 + 1),
                _ => (k % 65_536) as f32 * 1e-6 - 0.03,
            };
        }
    }
    // One exchange: the gradient out, the parameters of step 1 back.
    let mut exchange = client.open_exchange().await.unwrap();
    let (receipt, next, _) = exchange
        .exchange(&step0(a.worker_id, 1.0, 20), &g, None, Some(1))
        .await
        .unwrap();
    assert_eq!(receipt.version, 1);
    let next = next.expect("parameters asked for");
    let mut expected = pulled.params.clone();
    for (p, d) in expected.tensors_mut().zip(g.entries()) {
        for (x, &dx) in p.data_mut().iter_mut().zip(d.tensor.data()) {
            *x -= dx; // p + (-1.0 × g), as SGD computes it, bit for bit
        }
    }
    let (version, after) = client.parameters().await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        bits(&after),
        bits(&expected),
        "the push arrived bit for bit"
    );
    assert_eq!(next.version, 1);
    assert_eq!(
        bits(&next.params),
        bits(&expected),
        "the exchange's reply too"
    );
}

#[tokio::test]
async fn a_ten_million_parameter_model_goes_through_both_ways() {
    // 3,000 inputs x 3,334 hidden + 3,334 x 10: just over 10M f32 values (40 MB, streamed in
    // pieces of PIECE_BYTES).
    let job = r#"
[model]
kind = "mlp"
hidden = [3334]
[data]
kind = "synthetic_classification"
samples = 20
features = 3000
classes = 10
[training]
workers = 1
epochs = 1
"#;
    let server = ServerProcess::start(job, &[]);
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    let a = client.register("big", None).await.unwrap().assignment;
    let pulled = client.pull(a.worker_id, 0, false).await.unwrap();
    assert!(
        pulled.params.num_values() > 10_000_000,
        "{}",
        pulled.params.num_values()
    );
    let mut g = pulled.params.zeros_like();
    g.tensors_mut().for_each(|t| t.data_mut().fill(1e-3));
    let mut exchange = client.open_exchange().await.unwrap();
    let (_, next, _) = exchange
        .exchange(&step0(a.worker_id, 1.0, 20), &g, None, Some(1))
        .await
        .unwrap();
    let next = next.expect("parameters asked for");
    let (version, after) = client.parameters().await.unwrap();
    assert_eq!((version, next.version), (1, 1));
    assert_ne!(bits(&after), bits(&pulled.params));
    assert_eq!(bits(&after), bits(&next.params));
}
