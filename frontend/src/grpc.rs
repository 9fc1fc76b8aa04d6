//! The tonic gRPC service (`proto/thaw.proto`): the low-latency invoke path and the control-plane
//! calls tools need. Errors become statuses in [`crate::errors`].
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::lifecycle::CreateFunction;
use crate::names;
use crate::proto;
use crate::registry::VersionConfig;
use crate::service::{InvokeInput, Service};
use std::sync::Arc;
use thaw_scheduler::ProvisionedConfig;
use tonic::{Request, Response, Status};

/// The gRPC service over `svc`.
#[derive(Debug)]
pub struct GrpcService<B: Backend> {
    svc: Arc<Service<B>>,
}

impl<B: Backend> GrpcService<B> {
    /// The tonic server for `svc`.
    pub fn server(svc: Arc<Service<B>>) -> proto::thaw_server::ThawServer<Self> {
        proto::thaw_server::ThawServer::new(Self { svc })
            .max_decoding_message_size(crate::limits::MAX_BODY)
    }
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn configuration(svc: &Service<impl Backend>, c: &VersionConfig) -> proto::FunctionConfiguration {
    proto::FunctionConfiguration {
        function_name: c.name.clone(),
        function_arn: svc.arn.version(c),
        runtime: c.runtime.clone(),
        handler: c.handler.clone(),
        code_size: c.code_size,
        code_sha256: c.code_sha256.clone(),
        version: c.version.clone(),
        last_modified: crate::time::lambda_timestamp(c.last_modified_ms),
        memory_size: c.memory_mb,
        timeout: c.timeout_s,
        state: c.state.as_str().into(),
        state_reason: c.state_reason.clone().unwrap_or_default(),
        last_update_status: c.last_update_status.as_str().into(),
        environment: c.env.clone().into_iter().collect(),
    }
}

fn provisioned(c: &ProvisionedConfig) -> proto::ProvisionedConcurrencyConfig {
    proto::ProvisionedConcurrencyConfig {
        requested: c.requested,
        allocated: c.allocated,
        available: c.available,
        status: c.status.as_str().into(),
        status_reason: c.status_reason.clone().unwrap_or_default(),
        last_modified: crate::time::lambda_timestamp(crate::time::system_ms(c.last_modified)),
    }
}

#[tonic::async_trait]
impl<B: Backend> proto::thaw_server::Thaw for GrpcService<B> {
    async fn invoke(
        &self,
        request: Request<proto::InvokeRequest>,
    ) -> Result<Response<proto::InvokeResponse>, Status> {
        let r = request.into_inner();
        let f = names::parse(&r.function_name, opt(&r.qualifier))?;
        let cfg = self.svc.resolve_active(&f.name, f.qualifier.as_deref())?;
        let client_context =
            match opt(&r.client_context) {
                Some(s) => Some(serde_json::from_str(s).map_err(|_| {
                    ApiError::InvalidParameter("client_context must be JSON".into())
                })?),
                None => None,
            };
        let input = InvokeInput {
            payload: r.payload,
            client_context,
            tail: r.tail,
            request_id: None,
            qualifier: f.qualifier.clone(),
        };
        let kind = proto::InvocationType::try_from(r.invocation_type)
            .map_err(|_| ApiError::InvalidParameter("unknown invocation_type".into()))?;
        let reply = match kind {
            proto::InvocationType::DryRun => proto::InvokeResponse {
                executed_version: cfg.version.clone(),
                ..Default::default()
            },
            proto::InvocationType::Event => {
                let request_id = self.svc.enqueue(&cfg, input).await?;
                proto::InvokeResponse {
                    request_id,
                    ..Default::default()
                }
            }
            proto::InvocationType::RequestResponse => {
                let out = self.svc.invoke(&cfg, input).await?;
                proto::InvokeResponse {
                    request_id: out.request_id,
                    executed_version: out.version,
                    payload: out.body,
                    function_error: if out.function_error {
                        "Unhandled".into()
                    } else {
                        String::new()
                    },
                    log_result: out.log_result.unwrap_or_default(),
                    handler_duration_us: out.handler_duration.as_micros() as u64,
                    start_type: out.start.into(),
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn create_function(
        &self,
        request: Request<proto::CreateFunctionRequest>,
    ) -> Result<Response<proto::FunctionConfiguration>, Status> {
        let r = request.into_inner();
        let cfg = self.svc.create_function(CreateFunction {
            name: r.function_name,
            runtime: r.runtime,
            handler: r.handler,
            zip: r.zip_file,
            memory_mb: (r.memory_size != 0).then_some(r.memory_size),
            timeout_s: (r.timeout != 0).then_some(r.timeout),
            env: r.environment.into_iter().collect(),
            publish: r.publish,
            ..Default::default()
        })?;
        Ok(Response::new(configuration(&self.svc, &cfg)))
    }

    async fn get_function(
        &self,
        request: Request<proto::GetFunctionRequest>,
    ) -> Result<Response<proto::FunctionConfiguration>, Status> {
        let r = request.into_inner();
        let f = names::parse(&r.function_name, opt(&r.qualifier))?;
        let cfg = self
            .svc
            .registry
            .resolve(&f.name, f.qualifier.as_deref())
            .map_err(ApiError::from)?;
        Ok(Response::new(configuration(&self.svc, &cfg)))
    }

    async fn publish_version(
        &self,
        request: Request<proto::PublishVersionRequest>,
    ) -> Result<Response<proto::FunctionConfiguration>, Status> {
        let r = request.into_inner();
        let f = names::parse(&r.function_name, None)?;
        let cfg = self.svc.publish_version(&f.name, &r.description, None)?;
        Ok(Response::new(configuration(&self.svc, &cfg)))
    }

    async fn put_provisioned_concurrency(
        &self,
        request: Request<proto::PutProvisionedConcurrencyRequest>,
    ) -> Result<Response<proto::ProvisionedConcurrencyConfig>, Status> {
        let r = request.into_inner();
        let f = names::parse(&r.function_name, opt(&r.qualifier))?;
        Ok(Response::new(provisioned(&self.svc.put_provisioned(
            &f,
            r.provisioned_concurrent_executions,
        )?)))
    }

    async fn get_provisioned_concurrency(
        &self,
        request: Request<proto::GetProvisionedConcurrencyRequest>,
    ) -> Result<Response<proto::ProvisionedConcurrencyConfig>, Status> {
        let r = request.into_inner();
        let f = names::parse(&r.function_name, opt(&r.qualifier))?;
        Ok(Response::new(provisioned(&self.svc.get_provisioned(&f)?)))
    }

    async fn stats(
        &self,
        _request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsResponse>, Status> {
        let stats = self.svc.scheduler.stats();
        let pools = stats
            .pools
            .iter()
            .map(|p| proto::PoolStats {
                function_name: p.function_version.function.clone(),
                version: p.function_version.version.clone(),
                idle: p.idle,
                busy: p.busy,
                restoring: p.restoring,
                provisioned_requested: p.provisioned_requested,
                provisioned_allocated: p.provisioned_allocated,
                provisioned_available: p.provisioned_available,
                leases_warm: p.counters.leases_warm,
                leases_restore: p.counters.leases_restore,
                throttles: p.counters.throttles_reserved
                    + p.counters.throttles_account
                    + p.counters.no_capacity,
            })
            .collect();
        Ok(Response::new(proto::StatsResponse {
            pools,
            memory_used_bytes: stats.memory_used,
            memory_budget_bytes: stats.memory_budget,
            queued_events: self.svc.queued_events(),
            functions: self.svc.registry.function_count() as u32,
        }))
    }
}
