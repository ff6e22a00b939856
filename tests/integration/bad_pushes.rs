//! Bad pushes over real gRPC: each refused with the right status, the parameters unchanged.

use bytes::Bytes;
use tonic::Code;

use downpour_core::ParamSet;
use downpour_proto::convert::params_to_wire;
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

async fn push(client: &ServerClient, worker: u32, gradients: Vec<v1::Tensor>) -> tonic::Status {
    client
        .raw()
        .push(v1::PushRequest {
            worker_id: worker,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
            gradients,
            phases: None,
        })
        .await
        .expect_err("the push must be refused")
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
    client.push(a.worker_id, 0, 0, 0.5, 1, &good).await.unwrap();
    assert_eq!(client.parameters().await.unwrap().0, 1);
}

#[tokio::test]
async fn a_ten_million_parameter_model_goes_through_both_ways() {
    // 3,000 inputs x 3,334 hidden + 3,334 x 10: just over 10M f32 values (40 MB a message).
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
    client.push(a.worker_id, 0, 0, 1.0, 20, &g).await.unwrap();
    let (version, after) = client.parameters().await.unwrap();
    assert_eq!(version, 1);
    assert_ne!(bits(&after), bits(&pulled.params));
}
