//! How domain events are written down and read back: type name, schema version, JSON data, and
//! the chain of pure upcasters that brings an old stored shape to the current one.

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, MapDeserializer};
use serde::de::{DeserializeSeed, MapAccess};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

/// A stored event seen as the adjacently tagged map the events derive, `{"type": …, "data": …}`,
/// tag first (so serde reads the content straight into its variant), with the content read from
/// the stored JSON text itself: no `Value`, no copy of the text.
struct Tagged<'de> {
    event_type: &'de str,
    /// JSON text, parsed only here: text that is not JSON fails the decode.
    data: &'de str,
    /// Entries handed out so far.
    read: u8,
}

impl<'de> MapAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.read {
            0 => "type",
            1 => "data",
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.read += 1;
        if self.read == 1 {
            return seed.deserialize(BorrowedStrDeserializer::new(self.event_type));
        }
        let mut content = serde_json::Deserializer::from_str(self.data);
        let value = seed.deserialize(&mut content)?;
        content.end()?;
        Ok(value)
    }
}

/// An event as stored: its type name, the schema version of `data`, and the data itself.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPayload {
    pub event_type: String,
    pub schema_version: u32,
    pub data: Value,
}

/// One step of an upcasting chain: turns `event_type` data of `from_version` into
/// `from_version + 1`. Pure, so it can run on every read.
#[derive(Debug, Clone, Copy)]
pub struct Upcast {
    pub event_type: &'static str,
    pub from_version: u32,
    pub apply: fn(Value) -> Result<Value, UpcastError>,
}

/// A stored event that could not be brought to the current schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot upcast {event_type} from schema version {from_version}: {reason}")]
pub struct UpcastError {
    pub event_type: String,
    pub from_version: u32,
    pub reason: String,
}

/// A stored event that this code cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventDecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("{event_type} has schema version {found}, newer than this code's {current}")]
    FromTheFuture {
        event_type: String,
        found: u32,
        current: u32,
    },
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    #[error("{event_type} data does not match its schema: {reason}")]
    Malformed { event_type: String, reason: String },
}

/// A domain event enum, serialised by serde with `#[serde(tag = "type", content = "data")]`.
///
/// The default methods split that representation into the stored (type, version, data) triple
/// and back, running the upcasters in between.
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// Every event type with its current schema version. Stored names: never rename.
    const SCHEMA: &'static [(&'static str, u32)];
    /// The upcasters from older schema versions, in any order.
    const UPCASTERS: &'static [Upcast];

    /// The stored type name of this event.
    fn event_type(&self) -> &'static str;

    /// Current schema version of an event type, if the type is known.
    fn current_version(event_type: &str) -> Option<u32> {
        Self::SCHEMA
            .iter()
            .find(|(name, _)| *name == event_type)
            .map(|(_, version)| *version)
    }

    /// The stored form of this event, at its current schema version.
    fn encode(&self) -> EventPayload {
        let event_type = self.event_type();
        // Serialising a plain data enum to a JSON value cannot fail (no maps with non-string keys).
        let data = match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => {
                tagged.remove("data").unwrap_or(Value::Object(Map::new()))
            }
            _ => Value::Object(Map::new()),
        };
        EventPayload {
            event_type: event_type.to_owned(),
            schema_version: Self::current_version(event_type).unwrap_or(1),
            data,
        }
    }

    /// Brings a stored payload to the current schema version of its type.
    ///
    /// # Errors
    /// Unknown type, a version newer than this code, a missing step, or a step that fails.
    fn upcast(mut payload: EventPayload) -> Result<EventPayload, EventDecodeError> {
        let current = Self::current_version(&payload.event_type)
            .ok_or_else(|| EventDecodeError::UnknownType(payload.event_type.clone()))?;
        if payload.schema_version > current {
            return Err(EventDecodeError::FromTheFuture {
                event_type: payload.event_type,
                found: payload.schema_version,
                current,
            });
        }
        while payload.schema_version < current {
            let step = Self::UPCASTERS
                .iter()
                .find(|u| {
                    u.event_type == payload.event_type && u.from_version == payload.schema_version
                })
                .ok_or_else(|| UpcastError {
                    event_type: payload.event_type.clone(),
                    from_version: payload.schema_version,
                    reason: "no upcaster registered for this version".to_owned(),
                })?;
            payload.data = (step.apply)(payload.data)?;
            payload.schema_version += 1;
        }
        Ok(payload)
    }

    /// Reads a stored payload (of any known schema version) back into the event.
    ///
    /// # Errors
    /// See [`DomainEvent::upcast`]; also data that does not match the current schema.
    fn decode(payload: EventPayload) -> Result<Self, EventDecodeError> {
        let payload = Self::upcast(payload)?;
        let mut tagged = Map::new();
        tagged.insert("type".to_owned(), Value::String(payload.event_type.clone()));
        tagged.insert("data".to_owned(), payload.data);
        serde_json::from_value(Value::Object(tagged)).map_err(|e| EventDecodeError::Malformed {
            event_type: payload.event_type,
            reason: e.to_string(),
        })
    }

    /// [`DomainEvent::decode`] of a stored event it only borrows: an event at its current
    /// schema version is read in place (no copy of its data), an older one is upcast first.
    ///
    /// # Errors
    /// As for [`DomainEvent::decode`].
    fn decode_stored(
        event_type: &str,
        schema_version: u32,
        data: &Value,
    ) -> Result<Self, EventDecodeError> {
        if Self::current_version(event_type) != Some(schema_version) {
            return Self::decode(EventPayload {
                event_type: event_type.to_owned(),
                schema_version,
                data: data.clone(),
            });
        }
        // The tag before the content, so serde reads the content straight into its variant
        // instead of buffering it (a JSON object would put "data" first).
        let tag = Value::String(event_type.to_owned());
        let tagged = MapDeserializer::<_, serde_json::Error>::new(
            [("type", &tag), ("data", data)].into_iter(),
        );
        Self::deserialize(tagged).map_err(|e| EventDecodeError::Malformed {
            event_type: event_type.to_owned(),
            reason: e.to_string(),
        })
    }

    /// [`DomainEvent::decode_stored`] of data still in its stored JSON text: an event at its
    /// current schema version is read straight from the text, with no `Value` built on the way;
    /// an older one is parsed and upcast.
    ///
    /// # Errors
    /// As for [`DomainEvent::decode`].
    fn decode_stored_text(
        event_type: &str,
        schema_version: u32,
        data: &str,
    ) -> Result<Self, EventDecodeError> {
        let malformed = |e: serde_json::Error| EventDecodeError::Malformed {
            event_type: event_type.to_owned(),
            reason: e.to_string(),
        };
        if Self::current_version(event_type) != Some(schema_version) {
            return Self::decode(EventPayload {
                event_type: event_type.to_owned(),
                schema_version,
                data: serde_json::from_str(data).map_err(malformed)?,
            });
        }
        Self::deserialize(MapAccessDeserializer::new(Tagged {
            event_type,
            data,
            read: 0,
        }))
        .map_err(malformed)
    }
}
