//! Bring your own models: Hugging Face ONNX export folders added with `medley models add`, then indexed and searched.
